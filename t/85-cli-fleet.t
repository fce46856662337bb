#!/usr/bin/perl

# scripts/traffic-shift status in fleet mode: a real etcd and two nginx
# nodes.  status (and status UPSTREAM, --json, --watch) shows every node of
# the fleet after the pools: the generation it routes by, its live servers
# per pool, the age of its key, and "lagging" or "ahead" when its
# generation is not the one of the node asked.  A node without
# traffic_shift_sync shows no fleet; with etcd stopped status still exits
# 0 and says the fleet cannot be read.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;
use TSCli qw(cli);
use JSON::PP ();

TSEtcd::require_etcd();

my $JSON = JSON::PP->new;

my %node;
$node{a} = TSTest->new(name => 'clif_a', workers => 2);
$node{a}->backend($_) for qw(blue1 green1);
$node{b} = TSTest->new(name => 'clif_b', workers => 1);
$node{s} = TSTest->new(name => 'clif_single', workers => 1);
my $etcd = TSEtcd->new($node{a});

for my $n (qw(a b s)) {
    my $sync = $n eq 's' ? ''
             : 'traffic_shift_sync ' . $etcd->url . " node=$n timeout=1s;";
    $node{$n}->write_config(<<"EOF");
http {
    traffic_shift_zone shift 1m;
    $sync
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%;
                       server 127.0.0.1:%%PORT_clif_nothing%% down; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_clif_${n}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
    $node{$n}->start;
}

sub api_url { 'http://127.0.0.1:' . $node{$_[0]}->port("clif_$_[0]_api")
              . '/traffic/' }

sub ts {
    my ($n, @args) = @_;
    return cli($node{$n}, api_url($n), @args);
}

sub generation {
    my ($n) = @_;
    my $r = $node{$n}->http('GET', '/traffic/upstreams/app',
                            port => "clif_${n}_api", quiet => 1);
    return $r->{status} == 200 ? $r->{json}{generation} : -1;
}

sub fleet_names {
    my $r = $node{a}->http('GET', '/traffic/fleet', port => 'clif_a_api',
                           quiet => 1);
    return $r->{status} == 200
        ? join(',', map { $_->{node} } @{$r->{json}{nodes}}) : '';
}

ok($node{a}->wait_for(sub { fleet_names() eq 'a,b' }, timeout => 10,
                      what => 'nodes a and b in the fleet'),
   'the fleet has the nodes a and b');

# a change through the CLI on A, then every node at its generation

my $r = ts('a', 'set', 'app', 'blue=90', 'green=10');
is($r->{rc}, 0, 'set on A: exit 0') or diag($r->{err});
my $gen = generation('a');
ok($node{a}->wait_for(sub {
       my $f = $node{a}->http('GET', '/traffic/fleet', port => 'clif_a_api',
                              quiet => 1)->{json} // {};
       my @n = @{$f->{nodes} // []};
       @n == 2 && !grep { $_->{upstreams}{app}{generation} != $gen } @n;
   }, timeout => 5, what => "both node keys at generation $gen"),
   "both nodes report generation $gen");

for my $n (qw(a b)) {
    $r = ts($n, 'status');
    is($r->{rc}, 0, "status on \u$n: exit 0") or diag($r->{err});
    # "api" where the change was made, "fleet" on the other node
    my $src = $n eq 'a' ? 'api' : 'fleet';
    like($r->{out}, qr/^app: generation $gen, weights from $src/m,
         "status on \u$n: the upstream table first");
    like($r->{out}, qr/^fleet: 2 nodes, this node is $n$/m,
         "status on \u$n: a fleet section naming the node asked");
    like($r->{out}, qr/^\s+NODE\s+UPSTREAM\s+GENERATION\s+LIVE\s+AGE$/m,
         "status on \u$n: its header line");
    for my $m (qw(a b)) {
        like($r->{out},
             qr/^\s+$m\s+app\s+$gen\s+blue=1 green=1\s+\d+s$/m,
             "status on \u$n: node $m at generation $gen, live servers, "
             . 'age');
    }
    is($r->{err}, '', "status on \u$n: nothing on stderr");
}

my $one = ts('b', 'status', 'app');
is($one->{rc}, 0, 'status app on B: exit 0');
like($one->{out}, qr/^\s+a\s+app\s+$gen\s/m, 'status app: the fleet too');

$r = ts('a', 'status', '--json');
is($r->{rc}, 0, 'status --json: exit 0');
my $doc = eval { $JSON->decode($r->{out}) } // {};
is(scalar @{$doc->{fleet}{nodes} // []}, 2, 'status --json: .fleet.nodes '
   . 'has 2 nodes');
is($doc->{fleet}{node}, 'a', '.fleet.node is the node asked');
is($doc->{app}{generation}, $gen, 'and the upstreams are there as before');

$r = ts('b', 'status', 'app', '--json');
$doc = eval { $JSON->decode($r->{out}) } // {};
is($doc->{name}, 'app', 'status app --json: the upstream');
is_deeply([sort map { $_->{node} } @{$doc->{fleet}{nodes} // []}],
          [qw(a b)], 'and .fleet with both nodes');

$r = ts('a', 'status', '--json', '--watch', '--interval', '0.2',
        '--timeout', '0.5');
is($r->{rc}, 0, 'status --watch --json: exit 0');
my @docs = map { eval { $JSON->decode($_) } } split /\n/, $r->{out};
ok(@docs >= 2 && !(grep { @{$_->{fleet}{nodes} // []} != 2 } @docs),
   'status --watch --json: every line has the fleet') or diag($r->{out});

# a node whose generation is not this one's: B changed alone (local=on)

$r = $node{b}->http('PATCH', '/traffic/upstreams/app?local=on',
                    port => 'clif_b_api', quiet => 1,
                    json => { weights => { blue => 80, green => 20 } });
is($r->{status}, 200, 'a local change on B') or diag($r->{body});
my $gen_b = $r->{json}{generation};
ok($node{a}->wait_for(sub { ts('a', 'status')->{out}
                                =~ /^\s+b\s+app\s+$gen_b\s/m },
                      timeout => 5, what => "b at $gen_b in status"),
   "status on A shows b at generation $gen_b");
$r = ts('a', 'status');
like($r->{out}, qr/^\s+b\s+app\s+$gen_b\s.*\d+s  ahead \(this node: $gen\)$/m,
     'status on A: b is ahead of this node');
unlike($r->{out}, qr/^\s+a\s+.*(?:ahead|lagging)/m, 'a is not marked');
$r = ts('b', 'status');
note("traffic-shift status on B:\n$r->{out}");
like($r->{out}, qr/^\s+a\s+app\s+$gen\s.*\d+s  lagging \(this node: $gen_b\)$/m,
     'status on B: a is lagging behind this node');
$node{b}->allow_log(qr/local=on/);

# a node without traffic_shift_sync: no fleet, exit 0

$r = cli($node{s}, api_url('s'), 'status');
is($r->{rc}, 0, 'a node without traffic_shift_sync: exit 0');
like($r->{out}, qr/^app: generation/m, 'its upstream table');
unlike($r->{out}, qr/fleet/, 'no fleet section');
is($r->{err}, '', 'nothing on stderr');
$r = cli($node{s}, api_url('s'), 'status', '--json');
$doc = eval { $JSON->decode($r->{out}) } // {};
ok($doc->{app} && !exists $doc->{fleet}, 'status --json: no fleet member');

# etcd stopped: the local status, and a line saying the fleet cannot be
# read; exit 0

$etcd->stop;
$r = ts('a', 'status');
note("traffic-shift status on A, etcd stopped:\n$r->{out}");
is($r->{rc}, 0, 'etcd stopped: status still exits 0') or diag($r->{err});
like($r->{out}, qr/^app: generation $gen, weights from api/m,
     'with the local table');
like($r->{out}, qr/^fleet: cannot be read: etcd cannot be reached \(sync_unavailable, HTTP 503\)$/m,
     'and a line saying the fleet cannot be read');
$r = ts('a', 'status', 'app', '--json');
is($r->{rc}, 0, 'status app --json: exit 0');
$doc = eval { $JSON->decode($r->{out}) } // {};
is($doc->{fleet}{error}{code}, 'sync_unavailable',
   '.fleet is the API\'s error document');
is($doc->{generation}, $gen, 'next to the upstream');

$node{$_}->allow_log(qr/traffic_shift_sync/) for qw(a b);

done_testing();
