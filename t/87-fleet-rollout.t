#!/usr/bin/perl

# Rollouts in fleet mode: a rollout started on node A is driven by A (its
# key in etcd, under A's lease, and in A's node key for GET /fleet) and
# its steps' weights reach node B; B refuses a rollout or a weight change
# of its own while it runs, and names A.  The
# analysis adds up the nodes' counters: with every request sent through B
# (none through A), A's rollout progresses and succeeds, and a canary that
# fails on B is rolled back on both nodes.  A ramp started on B is driven by
# B and followed by A.  A driver that dies (SIGKILL)
# leaves the fleet when its lease expires, and B puts the weights from
# before the rollout back.  With etcd down, a rollout is refused (503).

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use JSON::PP ();
use MIME::Base64 ();
use POSIX ();
use TSTest;
use TSEtcd;

TSEtcd::require_etcd();

my %node;
$node{a} = TSTest->new(name => 'roll_a', workers => 2);
$node{a}->backend($_) for qw(fr_blue fr_canary);
$node{b} = TSTest->new(name => 'roll_b', workers => 1);
my $etcd = TSEtcd->new($node{a});
my $url = $etcd->url;

for my $n (qw(a b)) {
    $node{$n}->write_config(<<"EOF");
http {
    traffic_shift_zone shift 1m;
    traffic_shift_sync $url node=$n timeout=1s;
    upstream u_blue   { server 127.0.0.1:%%PORT_fr_blue%%; }
    upstream u_canary { server 127.0.0.1:%%PORT_fr_canary%%; }
    traffic_shift app { pool blue u_blue weight=100; pool canary u_canary; }
    server {
        listen 127.0.0.1:%%PORT_${n}_main%%;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:%%PORT_${n}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
    $node{$n}->start;
}

sub api {
    my ($n, $method, $path, $json) = @_;
    return $node{$n}->http($method, "/traffic$path", port => "${n}_api",
                           quiet => 1, $json ? (json => $json) : ());
}

sub ups { api($_[0], 'GET', '/upstreams/app')->{json} }

# polls COND until it holds or TIMEOUT seconds pass; returns the time taken
sub wait_for {
    my ($cond, $timeout, $what, $quiet) = @_;
    my $start = time;
    while (time - $start < $timeout) {
        return time - $start if $cond->();
        sleep 0.02;
    }
    diag("timed out after ${timeout}s waiting for $what") unless $quiet;
    return undef;
}

# sends requests through node N until COND holds (checked every 10);
# counts them in $sent
my $sent = 0;
sub traffic_until {
    my ($n, $cond, $timeout, $what) = @_;
    my $start = time;
    my $i = 0;
    while (time - $start < $timeout) {
        return time - $start if $i++ % 10 == 0 && $cond->();
        $node{$n}->http('GET', '/', port => "${n}_main", quiet => 1);
        $sent++;
    }
    diag("timed out after ${timeout}s waiting for $what");
    return undef;
}

my %rollout = (
    pool => 'canary', baseline => ['blue'], steps => [10, 50, 100],
    interval => '1s', min_requests => 20,
    analysis => { max_error_ratio => 0.05 },
    fast_abort => { error_ratio => 0.5, window => 20 },
    max_hold => '30s',
);

ok(wait_for(sub { api('a', 'GET', '/fleet')->{status} == 200
                  && @{api('a', 'GET', '/fleet')->{json}{nodes}} == 2 },
            10, 'both nodes in the fleet'), 'A and B are in the fleet');

# 1. started on A: A drives it, B follows its weights and refuses its own

my $r = api('a', 'PUT', '/upstreams/app/rollout', \%rollout);
is($r->{status}, 201, 'PUT rollout on A: 201') or diag($r->{body});

ok(wait_for(sub { ups('b')->{weights}{canary} == 10 }, 3,
            'step 1 on B'), 'B routes by step 1 (canary 10%)');
ok(wait_for(sub { ups('b')->{generation} == ups('a')->{generation} }, 3,
            'the same generation'), 'A and B at the same generation');

my ($rec) = $etcd->get('/traffic-shift/rollouts/app');
my $doc = $rec ? JSON::PP::decode_json($rec) : {};
is($doc->{node}, 'a', 'the rollout\'s key in etcd names its driver, A');
is($doc->{state}, 'progressing', 'and says it progresses');

$r = api('b', 'PUT', '/upstreams/app/rollout', \%rollout);
is($r->{status}, 409, 'PUT rollout on B meanwhile: 409');
is($r->{json}{error}{code}, 'rollout_in_progress', 'rollout_in_progress');
like($r->{json}{error}{text}, qr/node "a"/, 'naming the driving node');

$r = api('b', 'PATCH', '/upstreams/app',
         { weights => { blue => 50, canary => 50 } });
is($r->{status}, 409, 'PATCH weights on B meanwhile: 409');
is($r->{json}{error}{code}, 'rollout_in_progress', 'rollout_in_progress');

$r = api('b', 'GET', '/upstreams/app/rollout');
is($r->{status}, 404, 'GET rollout on B: 404');
like($r->{json}{error}{text} // '', qr/node "a" of the fleet drives/,
     'naming the node to ask');
is(ups('b')->{source}, 'fleet', 'B: the weights\' source is "fleet"');
is(ups('a')->{source}, 'api', 'A: "api"');

my $fleet;
ok(wait_for(sub {
    $fleet = api('b', 'GET', '/fleet')->{json} // {};
    my ($a) = grep { $_->{node} eq 'a' } @{$fleet->{nodes} // []};
    $a && ($a->{upstreams}{app}{rollout}{state} // '') eq 'progressing';
}, 3, 'the rollout in GET /fleet'), 'GET /fleet on B: node a drives it');
ok(!grep({ exists $_->{upstreams}{app}{counts} } @{$fleet->{nodes} // []}),
   'GET /fleet leaves the counters out');
my ($node_key) = $etcd->get('/traffic-shift/nodes/b');
like($node_key // '', qr/"counts":\{"blue":\[/,
     'B publishes its counters in its node key');

# 2. every request through B: A's analysis counts B's responses

my $took = traffic_until('b', sub {
    my $d = api('a', 'GET', '/upstreams/app/rollout')->{json};
    $d->{state} ne 'progressing';
}, 30, 'the rollout to end');
ok(defined $took, 'the rollout ended, with traffic through B only');

$doc = api('a', 'GET', '/upstreams/app/rollout')->{json};
is($doc->{state}, 'succeeded', 'it succeeded') or diag(explain($doc));
is(scalar @{$doc->{history} // []}, 3, 'three steps');
ok(!grep({ $_->{pool}{responses} < 20 } @{$doc->{history} // []}),
   'each step counted at least min_requests responses of B');
my $counted = 0;
$counted += $_->{pool}{responses} + $_->{baseline}{responses}
    for @{$doc->{history} // []};
diag("A's analysis counted $counted responses in its 3 windows; "
     . "$sent requests went through B");
cmp_ok($counted, '<=', $sent, 'never more than B answered');

ok(wait_for(sub { ups('b')->{weights}{canary} == 100 }, 3, 'the last step'),
   'B routes by the last step');
ok(wait_for(sub { !defined(($etcd->get('/traffic-shift/rollouts/app'))[0]) },
            3, 'the key deleted'),
   'the rollout\'s key is deleted after its end');

# 3. a canary failing on B: rolled back in the fleet

$r = api('a', 'PATCH', '/upstreams/app',
         { weights => { blue => 100, canary => 0 } });
is($r->{status}, 200, 'weights back to blue on A') or diag($r->{body});
ok(wait_for(sub { ups('b')->{weights}{blue} == 100 }, 3, 'blue on B'),
   'and on B');

$r = api('a', 'PUT', '/upstreams/app/rollout', \%rollout);
is($r->{status}, 201, 'a second rollout on A: 201') or diag($r->{body});
ok(wait_for(sub { ups('b')->{weights}{canary} == 10 }, 3, 'step 1 on B'),
   'B at step 1');

$node{a}->set_backend('fr_canary', failing => 1);

$took = traffic_until('b', sub { ups('b')->{weights}{canary} == 0 }, 15,
                      'the rollback on B');
ok(defined $took, 'the canary failing on B: rolled back');
$node{a}->set_backend('fr_canary', failing => 0);

$doc = api('a', 'GET', '/upstreams/app/rollout')->{json};
is($doc->{state}, 'rolled_back', 'A says rolled back');
like($doc->{reason} // '', qr/fast abort|failed/, 'with the reason')
    or diag($doc->{reason});
diag(sprintf('rollback seen on B %.2f s after the canary failed', $took))
    if defined $took;
cmp_ok($took // 99, '<', 5, 'within seconds of the first errors');

# 4. a ramp started on B: B drives it, A follows to the end

ok(wait_for(sub { !defined(($etcd->get('/traffic-shift/rollouts/app'))[0]) },
            3, 'the key deleted'), 'the rolled back rollout\'s key is gone');

$r = api('b', 'PATCH', '/upstreams/app', { active => 'canary',
                                          ramp => '2s' });
is($r->{status}, 200, 'a ramp on B: 200') or diag($r->{body});
ok(wait_for(sub { ups('a')->{weights}{canary} == 100 }, 6, 'A at 100'),
   'A follows B\'s ramp to canary 100%');
ok(wait_for(sub { !defined(($etcd->get('/traffic-shift/rollouts/app'))[0]) },
            3, 'the key deleted'), 'the ramp\'s key is deleted after it');
is(api('b', 'GET', '/upstreams/app/rollout')->{json}{state}, 'succeeded',
   'B: the ramp succeeded');
$r = api('a', 'PATCH', '/upstreams/app',
         { weights => { blue => 100, canary => 0 } });
is($r->{status}, 200, 'then A sets blue 100 again') or diag($r->{body});
ok(wait_for(sub { ups('b')->{weights}{blue} == 100 }, 3, 'blue on B'),
   'and B follows');

# 5. two rollouts started at the same moment on A and on B: etcd lets one
# node drive; the other one's rollout ends

ok(wait_for(sub { !defined(($etcd->get('/traffic-shift/rollouts/app'))[0]) },
            3, 'the key deleted'), 'no rollout key');
my %slow = (%rollout, interval => '60s');
my $child = fork() // die "fork: $!";
if ($child == 0) {
    my $r = api('b', 'PUT', '/upstreams/app/rollout', \%slow);
    $node{b}->write_file('race.json', $r->{body} // '');
    POSIX::_exit($r->{status} == 201 ? 0 : $r->{status} == 409 ? 1 : 2);
}
my $ra = api('a', 'PUT', '/upstreams/app/rollout', \%slow);
waitpid($child, 0);
my %race = (a => $ra->{status},
            b => { 0 => 201, 1 => 409 }->{$? >> 8} // 'other');
my %body = (a => $ra->{body} // '', b => $node{b}->read_file('race.json'));
diag("two rollouts at once: A answered $race{a}, B answered $race{b}");
is(join(',', sort values %race), '201,409',
   'one answered 201, the other 409: it waited for etcd\'s verdict');
my ($lost) = grep { $race{$_} eq '409' } keys %race;
like($lost ? $body{$lost} : '',
     qr/rollout_in_progress.*(another node drives|node \\"[ab]\\" of the fleet)/,
     'the 409 says another node drives one')
    or diag($lost ? $body{$lost} : 'no 409');

my ($driver, $other);
ok(wait_for(sub {
    my ($v) = $etcd->get('/traffic-shift/rollouts/app');
    return 0 unless $v;
    $driver = JSON::PP::decode_json($v)->{node};
    $other = $driver eq 'a' ? 'b' : 'a';
    my $o = api($other, 'GET', '/upstreams/app/rollout');
    ($o->{json}{state} // '') ne 'progressing';
}, 3, 'one driver'), 'one node drives the rollout in the fleet');
is(api($driver, 'GET', '/upstreams/app/rollout')->{json}{state},
   'progressing', "node ${driver}'s rollout progresses");
is($race{$driver}, 201, "the driving node, $driver, is the one that "
                        . 'answered 201');
ok(wait_for(sub { ups('a')->{weights}{canary} == 10
                  && ups('b')->{weights}{canary} == 10
                  && ups('a')->{generation} == ups('b')->{generation} },
            3, 'the same step on both'),
   'both nodes route by the driver\'s step 1, at one generation');

$r = api($driver, 'PATCH', '/upstreams/app/rollout', { action => 'abort' });
is($r->{status}, 200, "aborted on $driver") or diag($r->{body});
ok(wait_for(sub { ups('a')->{weights}{canary} == 0
                  && ups('b')->{weights}{canary} == 0 }, 3, 'blue again'),
   'both back to the weights from before');

# 6. the driver dies: B puts the weights from before back

ok(wait_for(sub { !defined(($etcd->get('/traffic-shift/rollouts/app'))[0]) },
            3, 'the key deleted'), 'no rollout key');

$r = api('a', 'PUT', '/upstreams/app/rollout',
         { %rollout, interval => '60s' });
is($r->{status}, 201, 'a third rollout on A') or diag($r->{body});
ok(wait_for(sub { ups('b')->{weights}{canary} == 10 }, 3, 'step 1 on B'),
   'B at step 1');

# a reload of the driver: its new workers put the key under their lease,
# and the old lease's end changes nothing

sub key_lease {
    my $res = $etcd->call('/v3/kv/range',
        { key => MIME::Base64::encode_base64('/traffic-shift/rollouts/app',
                                             '') });
    my $kv = ($res->{kvs} // [])->[0];
    return $kv ? $kv->{lease} // '' : '';
}

my $old_lease = key_lease();
ok($old_lease, 'the rollout\'s key is under a lease');
$node{a}->reload;
ok(wait_for(sub { my $l = key_lease(); $l && $l ne $old_lease }, 5,
            'the key under a new lease'),
   'A reloaded: the key is put again under its new workers\' lease');
$etcd->call('/v3/lease/revoke', { ID => $old_lease });
ok(!wait_for(sub { ups('b')->{weights}{canary} != 10 }, 1,
             'a change on B', 'quiet'),
   'the old lease revoked: B stays at step 1');
is(api('a', 'GET', '/upstreams/app/rollout')->{json}{state}, 'progressing',
   'A still drives the rollout');

# a restart of the driver (no state file: its rollout is gone): the
# weights from before the rollout come back in the fleet, by A itself
# (its own key, from before the restart) or by B (the key expired)

$node{a}->stop;
$node{a}->start;
ok(wait_for(sub { ups('b')->{weights}{canary} == 0 }, 8,
            'the weights from before on B'),
   'A restarted without its rollout: B routes by the weights from before');
ok(wait_for(sub { !defined(($etcd->get('/traffic-shift/rollouts/app'))[0]) },
            6, 'the key deleted'), 'the rollout\'s key is gone');
like($node{a}->error_log . $node{b}->error_log,
     qr/weights from before the rollout put back in the fleet/,
     'a node says it put them back');
diag('after the restart, the weights from before were put back by '
     . ($node{a}->error_log =~ /put back in the fleet/ ? 'A' : 'B'));
ok(wait_for(sub { ups('a')->{weights}{canary} == 0 }, 3, 'A too'),
   'A routes by them too');

$r = api('a', 'PUT', '/upstreams/app/rollout',
         { %rollout, interval => '60s' });
is($r->{status}, 201, 'a fourth rollout on A') or diag($r->{body});
ok(wait_for(sub { ups('b')->{weights}{canary} == 10 }, 3, 'step 1 on B'),
   'B at step 1');

$node{a}->kill9;

$took = wait_for(sub { ups('b')->{weights}{canary} == 0 }, 12,
                 'B restoring the weights');
ok(defined $took, 'A killed: B puts the weights from before back');
cmp_ok($took // 99, '<', 8, sprintf('within the lease and a second '
                                    . '(%.1f s)', $took // 99));
like($node{b}->error_log, qr/node "a" driving a rollout left the fleet/,
     'B says why');
is_deeply(ups('b')->{weights}, { blue => 100, canary => 0 },
          'B: blue 100, canary 0');

# an invalid rollout record in etcd (an operator's mistake): logged,
# nothing changes, and its deletion changes nothing either

my $mark_b = $node{b}->log_mark;
my $gen_b = ups('b')->{generation};
$etcd->put('/traffic-shift/rollouts/app', '{"node":"z","state":7}');
ok(wait_for(sub { $node{b}->error_log(since => $mark_b)
                  =~ /invalid rollout of "app" in etcd, ignored/ }, 3,
            'the error'), 'an invalid rollout record: logged by B');
$etcd->call('/v3/kv/deleterange',
            { key => MIME::Base64::encode_base64(
                         '/traffic-shift/rollouts/app', '') });
ok(wait_for(sub { my @n = $node{b}->error_log(since => $mark_b)
                         =~ /invalid rollout of "app"/g;
                  @n == 2 }, 3, 'the deletion seen'),
   'and its deletion too');
is_deeply(ups('b')->{weights}, { blue => 100, canary => 0 },
          'B\'s weights unchanged');
is(ups('b')->{generation}, $gen_b, 'at the same generation');

# 7. etcd down: a rollout needs it

$etcd->stop;
ok(wait_for(sub { api('b', 'PUT', '/upstreams/app/rollout',
                      \%rollout)->{status} == 503 }, 8, '503'),
   'etcd stopped: PUT rollout on B answers 503');
$r = api('b', 'PUT', '/upstreams/app/rollout', \%rollout);
is($r->{json}{error}{code}, 'sync_unavailable', 'sync_unavailable');
is(ups('b')->{weights}{canary}, 0, 'nothing started');

$node{b}->stop;

done_testing();
