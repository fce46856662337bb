#!/usr/bin/perl

# A slow node: three nginx nodes and a real etcd; nodes A and B talk to
# etcd directly, node C through a proxy that delays every byte by D ms
# each way (t/lib/TSDelay.pm, a real delay on the connections, no tc).
#
#   D = 150 ms (under C's timeout of 1 s): a change made on A is applied
#   by C after more than D and within a second; ?wait=fleet on A is
#   complete with C; B sees changes as fast as without C.
#   D = 1500 ms (over the timeout): ?wait=fleet on A answers 200 with
#   "complete":false naming c as lagging; a write on C answers 503
#   sync_timeout (sent, not answered in time: etcd takes it later); C
#   gives its watch up and routes by its last state.
#   D = 0 again: C catches up with A's generation.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;
use TSDelay;

TSEtcd::require_etcd();

my %node;
$node{a} = TSTest->new(name => 'slow_a', workers => 2);
$node{a}->backend($_) for qw(blue1 green1);
$node{b} = TSTest->new(name => 'slow_b', workers => 1);
$node{c} = TSTest->new(name => 'slow_c', workers => 2);
my $etcd = TSEtcd->new($node{a});
my $proxy = TSDelay->new($node{a}, name => 'slow_proxy', to => $etcd->port);

my %sync = (
    a => $etcd->url . ' node=a timeout=2s',
    b => $etcd->url . ' node=b timeout=2s',
    c => $proxy->url . ' node=c timeout=1s',
);

for my $n (qw(a b c)) {
    $node{$n}->write_config(<<"EOF");
http {
    traffic_shift_zone shift 1m;
    traffic_shift_sync $sync{$n};
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_slow_${n}_main%%;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:%%PORT_slow_${n}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
    $node{$n}->start;
}

sub api {
    my ($n, $method, $path, $json) = @_;
    return $node{$n}->http($method, "/traffic$path", port => "slow_${n}_api",
                           quiet => 1, timeout => 10,
                           $json ? (json => $json) : ());
}

sub generation {
    my ($n) = @_;
    my $r = api($n, 'GET', '/upstreams/app');
    return $r->{status} == 200 ? $r->{json}{generation} : -1;
}

sub patch {
    my ($n, $blue, $query) = @_;
    return api($n, 'PATCH', '/upstreams/app' . ($query // ''),
               { weights => { blue => $blue, green => 100 - $blue } });
}

# polls until COND is true; its value, or undef after TIMEOUT seconds
sub poll {
    my ($timeout, $cond, $what, $quiet) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $v = $cond->();
        return $v if $v;
        sleep 0.005;
    }
    diag("timed out after ${timeout}s waiting for $what") unless $quiet;
    return undef;
}

sub names {
    my ($n) = @_;
    my $r = api($n, 'GET', '/fleet');
    return $r->{status} == 200
        ? join(',', map { $_->{node} } @{$r->{json}{nodes}}) : '';
}

# requests through node N's proxy: { backend => count }
sub routed {
    my ($n) = @_;
    return $node{$n}->count_backends(n => 20, port => "slow_${n}_main");
}

sub ms { sprintf '%.0f ms', 1000 * $_[0] }

sub median {
    my @v = sort { $a <=> $b } @_;
    return $v[$#v / 2];
}

ok(poll(10, sub { names('a') eq 'a,b,c' }, 'a,b,c in the fleet'),
   'the fleet has the nodes a, b and c (C through the proxy, no delay)');

# 1. 150 ms each way, under C's timeout of 1 s

$proxy->set_delay(150);

# the delay is real: a write on C is one transaction, a round trip
my $start = time;
my $r = patch('c', 50);
my $took = time - $start;
is($r->{status}, 200, 'delay 150 ms: a PATCH on C works') or diag($r->{body});
cmp_ok($took, '>=', 0.3, 'and takes at least a round trip of 300 ms ('
                         . ms($took) . ')');
diag('delay 150 ms: a PATCH on C answered after ' . ms($took));

$start = time;
$r = patch('a', 0, '?wait=fleet');
$took = time - $start;
is($r->{status}, 200, 'PATCH ?wait=fleet on A: 200') or diag($r->{body});
my $gen = $r->{json}{generation};
is_deeply($r->{json}{fleet}, { generation => $gen,
                               complete => JSON::PP::true,
                               applied => [qw(a b c)], lagging => [] },
          'complete, node c included') or diag($r->{body});
cmp_ok($took, '<', 2, 'answered before the timeout of 2 s ('
                      . ms($took) . ')');
diag('delay 150 ms: ?wait=fleet on A complete after ' . ms($took));
is(generation('c'), $gen, "C routes by generation $gen");
is_deeply(routed('c'), { green1 => 20 },
          'requests through C go by the new weights (green 100)');

# 2. changes made on A: seen on B at once, on C after the delay

my (@lag_b, @lag_c);
for my $i (1 .. 8) {
    $start = time;
    $r = patch('a', $i % 2 ? 30 : 70);
    is($r->{status}, 200, "change $i on A: 200") or last;
    my $g = $r->{json}{generation};
    my $lb = poll(2, sub { generation('b') == $g and time - $start },
                  "B at generation $g") or last;
    my $lc = poll(2, sub { generation('c') == $g and time - $start },
                  "C at generation $g") or last;
    push @lag_b, $lb;
    push @lag_c, $lc;
}
is(scalar @lag_c, 8, 'every change reached B and C');
diag(sprintf 'delay 150 ms, 8 changes on A: seen on B after a median of '
     . '%s (max %s), on C after a median of %s (min %s, max %s)',
     ms(median(@lag_b)), ms((sort { $b <=> $a } @lag_b)[0]),
     ms(median(@lag_c)), ms((sort { $a <=> $b } @lag_c)[0]),
     ms((sort { $b <=> $a } @lag_c)[0]));
cmp_ok(median(@lag_b), '<', 0.05,
       'B is not held up by the slow node: median under 50 ms');
cmp_ok((sort { $a <=> $b } @lag_c)[0], '>', 0.15,
       'C applies each change after more than the delay of 150 ms');
cmp_ok((sort { $b <=> $a } @lag_c)[0], '<', 1,
       'and within a second');

# 3. 1500 ms each way, over C's timeout of 1 s

my $before = generation('c');
$proxy->set_delay(1500);
my $slow_since = time;
my $mark = $node{c}->log_mark;

$start = time;
$r = patch('a', 90, '?wait=fleet');
$took = time - $start;
is($r->{status}, 200, 'delay 1500 ms: PATCH ?wait=fleet on A still 200')
    or diag($r->{body});
my $fleet = $r->{json}{fleet} // {};
ok(!$fleet->{complete}, '"complete": false');
is_deeply($fleet->{lagging}, ['c'], 'node c is named as lagging');
is_deeply($fleet->{applied}, [qw(a b)], 'a and b applied it');
cmp_ok($took, '>=', 1.9, 'answered after A\'s timeout of 2 s ('
                         . ms($took) . ')');
diag('delay 1500 ms: ?wait=fleet on A answered after ' . ms($took)
     . ', lagging: ' . join(',', @{$fleet->{lagging} // []}));
my $gen_a = $r->{json}{generation};

$start = time;
$r = patch('c', 10);
$took = time - $start;
is($r->{status}, 503, 'a PATCH on C: 503') or diag($r->{body});
is($r->{json}{error}{code}, 'sync_timeout',
   'sync_timeout: sent, not answered in time');
like($r->{json}{error}{text}, qr/may have been made/,
     'the answer says the change may have been made');
cmp_ok($took, '<', 1.5, 'answered after C\'s timeout of 1 s ('
                        . ms($took) . ')');
diag('delay 1500 ms: PATCH on C answered 503 after ' . ms($took));

# the transaction was sent, and a slow link delivers it: etcd takes it
# after the delay, as the 503 warned (docs/fleet.md, "Failure modes")
my $key = '/traffic-shift/upstreams/app';
my $made = poll(3, sub { (($etcd->get($key))[0] // '') =~ /"blue":10\b/
                          and time }, 'C', 1);
ok($made, 'the write on C that answered sync_timeout is made in etcd later');
diag(sprintf 'delay 1500 ms: the write C answered 503 is in etcd %.1f s '
     . 'after it was sent', $made - $start) if $made;

# C's watch cannot tell a slow etcd from a lost one but by its lease:
# without a keepalive answered for 5 s it gives the watch up, and cannot
# open it again (each read times out)
ok(poll(8, sub { $node{c}->error_log(since => $mark) =~ /no answer/ },
        'C to give its watch up'),
   'C gives its watch up ("no answer" in its log)');
diag(sprintf 'delay 1500 ms: C gave its watch up after %.1f s',
     time - $slow_since);

$before = generation('c');
my %weights = %{api('c', 'GET', '/upstreams/app')->{json}{weights}};
$r = patch('a', 100, '');
is($r->{status}, 200, 'a change on A while C is cut off') or diag($r->{body});
my $gen_last = $r->{json}{generation};
my $other = poll(1.5, sub { generation('c') != $before }, 'C', 1);
ok(!$other, "C stays at generation $before for 1.5 s");
my $expect = $weights{blue} == 100 ? { blue1 => 20 }
           : $weights{green} == 100 ? { green1 => 20 } : undef;
if ($expect) {
    is_deeply(routed('c'), $expect, 'and routes by its last weights');
} else {
    my $c = routed('c');
    is(($c->{blue1} // 0) + ($c->{green1} // 0), 20,
       "and routes by its last weights (blue $weights{blue})");
}
is_deeply(routed('a'), { blue1 => 20 }, 'A routes by the new weights');

my $gone = poll(12, sub { names('a') eq 'a,b' }, 'c to leave the fleet');
ok($gone, 'C leaves the fleet when its lease expires');
diag(sprintf 'delay 1500 ms: C gone from GET /fleet %.1f s after the delay '
     . 'was set', time - $slow_since) if $gone;

# 4. no delay: C catches up

$proxy->set_delay(0);
$start = time;
$gen_a = generation('a');
ok(poll(8, sub { generation('c') == $gen_a },
        "C at A's generation $gen_a"),
   "delay 0: C catches up with A's generation $gen_a");
diag('delay 0: C caught up after ' . ms(time - $start));
is_deeply(routed('c'), { blue1 => 20 }, 'and routes by A\'s weights');
ok(poll(8, sub { names('a') eq 'a,b,c' }, 'c back in the fleet'),
   'and is back in the fleet');

$proxy->stop;
$node{c}->allow_log(qr/traffic_shift_sync/);
$node{$_}->allow_log(qr/traffic_shift_sync/) for qw(a b);

done_testing();
