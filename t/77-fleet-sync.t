#!/usr/bin/perl

# Fleet mode against a real etcd: two nginx nodes with two workers each,
# one state.  A change on node A reaches node B within a second (measured
# over 20 changes), a value put into etcd by hand reaches both, each node
# holds one watch (not one per worker, also after a reload), generations
# are etcd's, and of two writers with the same ETag on different nodes
# exactly one wins.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;

TSEtcd::require_etcd();

my $na = TSTest->new(name => 'node_a', workers => 2);
$na->backend($_) for qw(blue1 green1);
my $nb = TSTest->new(name => 'node_b', workers => 2);
my $etcd = TSEtcd->new($na);
my $url = $etcd->url;

sub conf {
    my ($node) = @_;
    return <<"EOF";
http {
    traffic_shift_zone shift 1m;
    traffic_shift_sync $url node=$node timeout=1s;
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_${node}_main%%;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:%%PORT_${node}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
}

$na->write_config(conf('a'));
$nb->write_config(conf('b'));
$na->start;
$nb->start;

my %node = (a => $na, b => $nb);

sub api {
    my ($n, $method, $json, $etag) = @_;
    return $node{$n}->http($method, '/traffic/upstreams/app',
        port => "${n}_api", quiet => 1,
        $json ? (json => $json) : (),
        defined $etag ? (headers => { 'If-Match' => $etag }) : ());
}

sub weights {
    my ($n) = @_;
    my $r = api($n, 'GET');
    return $r->{status} == 200 ? $r->{json} : undef;
}

# polls node N until its generation is GEN; the seconds it took, or undef
sub wait_generation {
    my ($n, $gen, $timeout) = @_;
    my $start = time;
    my $deadline = $start + ($timeout // 5);
    while (time < $deadline) {
        my $w = weights($n);
        return time - $start if $w && $w->{generation} == $gen;
        sleep 0.005;
    }
    return undef;
}

my $key = '/traffic-shift/upstreams/app';

# the key is not in etcd yet: each node has its configured weights

is(weights('a')->{weights}{blue}, 100, 'A starts with its configuration');
ok(!defined(($etcd->get($key))[0]), 'etcd has no key for the upstream yet');

# a first change through A's API, conditioned on A's own generation

my $r = api('a', 'PATCH', { weights => { blue => 90, green => 10 } },
            api('a', 'GET')->{headers}{etag});
is($r->{status}, 200, 'PATCH on A: 200') or diag($r->{body});
my ($value, $mod) = $etcd->get($key);
ok(defined $value, 'the weights are in etcd');
is($r->{json}{generation}, $mod,
   'the answer\'s generation is the key\'s mod revision in etcd');
is($r->{headers}{etag}, "\"$mod\"", 'and so is its ETag');
is_deeply(JSON::PP::decode_json($value), { weights => { blue => 90,
                                                        green => 10 } },
          'the value in etcd is the weights document');
ok(defined wait_generation('b', $mod, 1), 'B applied it within 1 s');
is(weights('b')->{weights}{green}, 10, 'B routes with the new weights');

# a value put into etcd by an operator reaches every node

my $rev = $etcd->put($key, '{"weights":{"blue":25,"green":75}}');
for my $n (qw(a b)) {
    ok(defined wait_generation($n, $rev, 1),
       "a value put into etcd: node \u$n applied it within 1 s");
    is(weights($n)->{weights}{green}, 75, "node \u$n has green at 75");
}

# an invalid value in etcd is ignored: the last weights stay

my $bad = $etcd->put($key, '{"weights":{"blue":25,"green":70}}');
my $good = $etcd->put($key, '{"weights":{"blue":30,"green":70}}');
for my $n (qw(a b)) {
    ok(defined wait_generation($n, $good, 2),
       "node \u$n skips an invalid value and applies the next one");
}
like($na->error_log, qr/invalid weights for "app" at revision $bad in etcd/,
     "A logs the invalid value");
like($nb->error_log, qr/invalid weights for "app" at revision $bad in etcd/,
     "B logs the invalid value");

# convergence: 20 changes on A, each seen on B

my @lag;
for my $i (1 .. 20) {
    my $blue = $i % 2 ? 60 : 40;
    my $res = api('a', 'PATCH', { weights => { blue => $blue,
                                               green => 100 - $blue } });
    is($res->{status}, 200, "change $i on A: 200") or last;
    my $lag = wait_generation('b', $res->{json}{generation}, 2);
    ok(defined $lag, "change $i reached B") or last;
    push @lag, $lag;
}
@lag = sort { $a <=> $b } @lag;
my $p99 = $lag[int(0.99 * $#lag + 0.5)] // 99;
diag(sprintf('convergence A -> B over %d changes: median %.1f ms, '
             . 'p99 %.1f ms, max %.1f ms', scalar @lag,
             1000 * $lag[$#lag / 2], 1000 * $p99, 1000 * $lag[-1]));
cmp_ok($p99, '<', 1, 'p99 of the convergence is under 1 s');

# one watch per node, whatever the number of workers

is($etcd->watchers, 2, 'etcd has 2 watchers for 2 nodes of 2 workers');

# a reload of B: its new workers take the watch over, still one

$nb->reload;
$r = api('a', 'PATCH', { weights => { blue => 35, green => 65 } });
is($r->{status}, 200, 'after a reload of B: a change on A');
ok(defined wait_generation('b', $r->{json}{generation}, 3),
   'B\'s new workers applied it');
my $watchers;
my $deadline = time + 5;
while (time < $deadline) {
    last if ($watchers = $etcd->watchers) == 2;
    sleep 0.05;
}
is($watchers, 2, 'after the reload, still one watch per node');

# two writers with the same ETag on different nodes: exactly one wins

for my $round (1 .. 3) {
    my $etag = api('a', 'GET')->{headers}{etag};
    ok(defined wait_generation('b', $etag =~ s/"//gr, 1),
       "round $round: both nodes at $etag");
    my $file = $na->testdir . "/race-$round";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        my $res = api('b', 'PATCH', { weights => { blue => 10 + $round,
                                                   green => 90 - $round } },
                      $etag);
        open(my $fh, '>', $file) or POSIX::_exit(1);
        print $fh $res->{status};
        close $fh;
        POSIX::_exit(0);
    }
    my $mine = api('a', 'PATCH', { weights => { blue => 80 + $round,
                                                green => 20 - $round } },
                   $etag);
    waitpid $pid, 0;
    open(my $fh, '<', $file) or die "$file: $!";
    my $theirs = <$fh>;
    close $fh;
    my @st = sort ($mine->{status}, $theirs);
    is("@st", '200 412', "round $round: one 200, one 412 (A $mine->{status}"
                         . ", B $theirs)");
}

$r = api('b', 'PATCH', { weights => { blue => 50, green => 50 } }, '"1"');
is($r->{status}, 412, 'a stale ETag on B: 412');
is($r->{json}{error}{code}, 'precondition_failed', 'precondition_failed');
like($r->{json}{error}{text}, qr/in the fleet/, 'naming the fleet');

done_testing();
