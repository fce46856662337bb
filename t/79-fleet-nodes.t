#!/usr/bin/perl

# GET /fleet: three nodes publish what they applied under an etcd lease;
# every node's API shows them all, with the generation each routes by and
# the live servers of each pool.  A change shows on every node within a
# second; a write with ?wait=fleet is answered once every node has it, or
# after the timeout naming the node that lags; a stopped node leaves the
# fleet when its lease expires.  Each node holds one watch.  A node without traffic_shift_sync answers 404
# not_in_fleet; with etcd down, 503 sync_unavailable.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;

TSEtcd::require_etcd();

my %node;
$node{a} = TSTest->new(name => 'node_a', workers => 2);
$node{a}->backend($_) for qw(blue1 green1);
$node{b} = TSTest->new(name => 'node_b', workers => 1);
$node{c} = TSTest->new(name => 'node_c', workers => 1);
my $etcd = TSEtcd->new($node{a});
my $url = $etcd->url;

sub conf {
    my ($n, $sync) = @_;
    return <<"EOF";
http {
    traffic_shift_zone shift 1m;
    $sync
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%;
                       server 127.0.0.1:%%PORT_nothing%% down; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_${n}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
}

for my $n (qw(a b c)) {
    $node{$n}->write_config(conf($n, "traffic_shift_sync $url node=$n "
                                     . 'timeout=1s;'));
    $node{$n}->start;
}

sub fleet {
    my ($n) = @_;
    return $node{$n}->http('GET', '/traffic/fleet', port => "${n}_api",
                           quiet => 1);
}

# waits until COND holds for node N's fleet document
sub wait_fleet {
    my ($n, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    my $r;
    while (time < $deadline) {
        $r = fleet($n);
        return $r->{json} if $r->{status} == 200 && $cond->($r->{json});
        sleep 0.02;
    }
    diag("last fleet document of \u$n: "
         . ($r ? "$r->{status} $r->{body}" : 'none'));
    return undef;
}

sub names { join ',', map { $_->{node} } @{$_[0]{nodes}} }

my $doc = wait_fleet('b', sub { names($_[0]) eq 'a,b,c' });
ok($doc, 'GET /fleet on B lists the nodes a, b and c');
is($doc && $doc->{node}, 'b', 'and names the node that answers');
my ($c) = grep { $_->{node} eq 'c' } @{$doc->{nodes} // []};
is_deeply($c && $c->{upstreams}{app}{live}, { blue => 1, green => 1 },
          'node c: live servers per pool');
ok($c && $c->{age} <= 2, 'node c: last contact within 2 s');
ok($c && $c->{pid} > 0, 'node c: its worker\'s pid');

is($etcd->watchers, 3, 'etcd has 3 watchers for 3 nodes (4 workers)');

# a change shows on every node of the fleet document within a second

my $start = time;
my $r = $node{a}->http('PATCH', '/traffic/upstreams/app', port => 'a_api',
                       json => { weights => { blue => 50, green => 50 } },
                       quiet => 1);
is($r->{status}, 200, 'PATCH on A') or diag($r->{body});
my $gen = $r->{json}{generation};
$doc = wait_fleet('c', sub {
    my @n = @{$_[0]{nodes}};
    @n == 3 && !grep { $_->{upstreams}{app}{generation} != $gen } @n;
}, 3);
ok($doc, "every node reports generation $gen");
my $took = time - $start;
cmp_ok($took, '<', 1, sprintf('within 1 s (%.0f ms)', 1000 * $took));

# ?wait=fleet: answered once every node reports the generation

sub patch {
    my ($n, $query, $w) = @_;
    return $node{$n}->http('PATCH', "/traffic/upstreams/app$query",
                           port => "${n}_api", quiet => 1,
                           json => { weights => { blue => $w,
                                                  green => 100 - $w } });
}

$r = patch('b', '?wait=fleet', 30);
is($r->{status}, 200, 'PATCH ?wait=fleet on B: 200') or diag($r->{body});
$gen = $r->{json}{generation};
is_deeply($r->{json}{fleet}, { generation => $gen, complete => JSON::PP::true,
                               applied => [qw(a b c)], lagging => [] },
          'the answer says every node applied it')
    or diag($r->{body});
for my $n (qw(a c)) {
    is($node{$n}->http('GET', '/traffic/upstreams/app', port => "${n}_api",
                       quiet => 1)->{json}{generation}, $gen,
       "node \u$n routes by generation $gen when B answers");
}

$r = patch('b', '?wait=all', 30);
is($r->{status}, 400, '?wait=all: 400');
is($r->{json}{error}{code}, 'invalid_value', 'invalid_value');

# a node that stops leaves the fleet when its lease expires

$node{c}->stop;
ok(wait_fleet('a', sub { names($_[0]) eq 'a,b' }, 10),
   'node c stopped: gone from the fleet within its lease');

# a node that cannot apply the change (other pools) is named as lagging

my $x = $node{x} = TSTest->new(name => 'node_x');
$x->write_config(conf('x', "traffic_shift_sync $url node=x timeout=1s;")
                 =~ s/pool green u_green/pool canary u_green/r);
$x->start;
ok(wait_fleet('a', sub { names($_[0]) eq 'a,b,x' }), 'node x joins');
$start = time;
$r = patch('a', '?wait=fleet', 60);
$took = time - $start;
is($r->{status}, 200, 'PATCH ?wait=fleet with a node that lags: 200');
is_deeply($r->{json}{fleet}{lagging}, ['x'], 'naming node x as lagging');
is_deeply($r->{json}{fleet}{applied}, [qw(a b)], 'a and b applied it');
ok(!$r->{json}{fleet}{complete}, 'the wait is not complete');
cmp_ok($took, '>=', 0.9, sprintf('answered after the timeout (%.2f s)',
                                 $took));
like($x->error_log, qr/invalid weights for "app" at revision/,
     'node x logs why');

# a node without traffic_shift_sync

my $d = TSTest->new(name => 'node_d');
$d->write_config(conf('d', ''));
$d->start;
$r = $d->http('GET', '/traffic/fleet', port => 'd_api', quiet => 1);
is($r->{status}, 404, 'no traffic_shift_sync: GET /fleet is 404');
is($r->{json}{error}{code}, 'not_in_fleet', 'not_in_fleet');

# etcd down

$etcd->stop;
$r = fleet('a');
is($r->{status}, 503, 'etcd down: GET /fleet is 503');
is($r->{json}{error}{code}, 'sync_unavailable', 'sync_unavailable');

$node{$_}->allow_log(qr/traffic_shift_sync/) for qw(a b c x);

done_testing();
