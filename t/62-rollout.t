#!/usr/bin/perl

# Rollouts run by nginx: a fine canary is promoted step by step (two
# workers, one change per step); a canary that starts failing is rolled
# back by the fast abort, and gets no request after the rollback answer;
# a slow one by the p99 limit; a quiet one holds, then pauses; one whose
# server the probes mark down is rolled back; actions, and refusals.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use TSTest;
use TSRollout;

my $t = TSTest->new(workers => 2);
$t->backend($_, slow => 0.001) for qw(blue1 blue2 blue3 blue4 blue5);
$t->backend($_) for qw(canary1 canary2 canary4 canary5);
$t->backend('canary3', slow => 0.3);

my $hc = 'health_check uri=/healthz interval=200ms timeout=200ms '
    . 'fails=1 passes=1;';

$t->write_config(<<"EOF");
http {
    upstream b1 { server 127.0.0.1:%%PORT_blue1%%; }
    upstream c1 { server 127.0.0.1:%%PORT_canary1%%; }
    upstream b2 { server 127.0.0.1:%%PORT_blue2%%; }
    upstream c2 { server 127.0.0.1:%%PORT_canary2%%; }
    upstream b3 { server 127.0.0.1:%%PORT_blue3%%; }
    upstream c3 { server 127.0.0.1:%%PORT_canary3%%; }
    upstream b4 { server 127.0.0.1:%%PORT_blue4%%; }
    upstream c4 { server 127.0.0.1:%%PORT_canary4%%; }
    upstream b5 { server 127.0.0.1:%%PORT_blue5%%; }
    upstream c5 { server 127.0.0.1:%%PORT_canary5%%; $hc }

    traffic_shift a1 { pool blue b1 weight=100; pool canary c1; }
    traffic_shift a2 { pool blue b2 weight=100; pool canary c2; }
    traffic_shift a3 { pool blue b3 weight=100; pool canary c3; }
    traffic_shift a4 { pool blue b4 weight=100; pool canary c4; }
    traffic_shift a5 { pool blue b5 weight=100; pool canary c5; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /a1/ { proxy_pass http://a1/; }
        location /a2/ { proxy_pass http://a2/; }
        location /a3/ { proxy_pass http://a3/; }
        location /a4/ { proxy_pass http://a4/; }
        location /a5/ { proxy_pass http://a5/; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
$t->start;

my %api = (api => '/traffic', port => 'api');

sub ups { $t->get("/traffic/upstreams/$_[0]", port => 'api')->{json} }

sub start_rollout {
    my ($ups, $doc) = @_;
    return $t->put("/traffic/upstreams/$ups/rollout", $doc, port => 'api');
}

sub drive {
    my ($ups, %o) = @_;
    return TSRollout::drive($t, $ups, %api, path => "/$ups/", %o);
}

my %fine = (
    pool => 'canary', baseline => ['blue'], steps => [10, 50, 100],
    interval => '1s', min_requests => 5,
    analysis => { max_error_ratio => 0.05, max_p99 => '500ms',
                  max_error_ratio_vs_baseline => 2,
                  max_p99_vs_baseline => 1.5 },
    fast_abort => { error_ratio => 0.5, window => 10 },
    max_hold => '30s',
);

# 1. a fine canary: promoted step by step, one change per step

my $gen = ups('a1')->{generation};
my $r = start_rollout('a1', \%fine);
is($r->{status}, 201, 'PUT rollout: 201');
is($r->{headers}{etag}, '"' . ($gen + 1) . '"', 'ETag: the generation');
is($r->{json}{state}, 'progressing', 'progressing');
is($r->{json}{step}, 1, 'step 1');
is_deeply($r->{json}{before}, { blue => 100, canary => 0 },
          'the weights before the rollout');
is_deeply(ups('a1')->{weights}, { blue => 90, canary => 10 },
          'step 1: canary 10%');

is(start_rollout('a1', \%fine)->{status}, 409, 'a second rollout: 409');

$r = $t->patch('/traffic/upstreams/a1', { weights => { blue => 50,
               canary => 50 } }, port => 'api');
is($r->{status}, 409, 'weights changed during a rollout: 409');
is($r->{json}{error}{code}, 'rollout_in_progress', 'rollout_in_progress');

my $doc = drive('a1', until => sub { $_[0]{state} ne 'progressing' },
                what => 'a1 succeeded');
is($doc->{state}, 'succeeded', 'the fine canary succeeded');
is_deeply([map { [$_->{step}, $_->{verdict}] } @{$doc->{history}}],
          [[1, 'pass'], [2, 'pass'], [3, 'pass']], 'three steps passed');
ok(!grep({ $_->{pool}{responses} < 5 } @{$doc->{history}}),
   'each step with at least min_requests responses');
is_deeply(ups('a1')->{weights}, { blue => 0, canary => 100 },
          'the canary has everything');
is(ups('a1')->{generation}, $gen + 3,
   'one change per step, whatever the workers');
is($doc->{reason}, undef, 'no reason for a success');
my $steps = () = $t->error_log =~ /traffic_shift "a1": rollout step \d+ passed/g;
is($steps, 2, 'two steps passed in the log, once each');

# 2. a canary that fails at step 2: fast abort, no request after it

$r = start_rollout('a2', { %fine, steps => [20, 50, 100],
                          fast_abort => { error_ratio => 0.2,
                                          window => 10 } });
is($r->{status}, 201, 'a2: started');
$doc = drive('a2', until => sub { $_[0]{step} == 2 }, what => 'a2 step 2');
ok($doc, 'a2 at step 2');
my $ok_hits = $t->backend_hits('canary2');
$t->set_backend('canary2', failing => 1);

my ($failed, $after) = (0, 0);
$doc = drive('a2', until => sub { $_[0]{state} ne 'progressing' }, poll => 1,
             on_request => sub { $failed++ if $_[0]{status} == 503 },
             what => 'a2 rolled back');
is($doc->{state}, 'rolled_back', 'a2: rolled back');
like($doc->{reason}, qr/^fast abort: \d+ errors in the last 10 responses/,
     'the reason: fast abort');
ok($failed <= 10, "rolled back within one window ($failed failed answers)");
is_deeply(ups('a2')->{weights}, { blue => 100, canary => 0 },
          'a2: the weights from before the rollout');
my $hits = $t->backend_hits('canary2');
$t->get('/a2/', quiet => 1) for 1 .. 30;
is($t->backend_hits('canary2'), $hits, 'no canary request after the rollback');
like($t->error_log, qr/\[warn\].*"a2": rollout rolled back, fast abort/,
     'the rollback logged at warn with the numbers');

# 3. a canary that gets slow at step 2: the p99 limit

$r = start_rollout('a3', { %fine, fast_abort => undef,
                          analysis => { max_p99 => '100ms' } });
# fast_abort: null is not a valid document
is($r->{status}, 400, 'fast_abort null: 400');
my %slow = %fine;
delete $slow{fast_abort};
$slow{analysis} = { max_p99 => '100ms' };
is(start_rollout('a3', \%slow)->{status}, 201, 'a3: started');
$doc = drive('a3', until => sub { $_[0]{step} == 2 }, what => 'a3 step 2');
$doc = drive('a3', until => sub { $_[0]{state} ne 'progressing' },
             path => '/a3/slow', what => 'a3 rolled back');
is($doc->{state}, 'rolled_back', 'a3: slow canary rolled back');
like($doc->{reason}, qr/^step 2 failed: p99 \d+\.\d+ms over 100ms/,
     'by the p99 limit');
is($doc->{history}[-1]{verdict}, 'fail', 'the step failed');
ok($doc->{history}[-1]{pool}{p99} > 100, 'its p99 is in the history');

# 4. a quiet canary: holds, then pauses; actions

is(start_rollout('a4', { %fine, min_requests => 100000,
                         max_hold => '1s' })->{status}, 201, 'a4: started');
$doc = drive('a4', until => sub { $_[0]{state} ne 'progressing' },
             pause => 0.05, what => 'a4 paused');
is($doc->{state}, 'paused', 'too quiet: paused');
is($doc->{history}[-1]{verdict}, 'inconclusive', 'inconclusive');
like($t->error_log, qr/"a4": rollout step 1 holds/, 'the hold logged');
like($t->error_log, qr/\[warn\].*"a4": rollout paused, step 1 inconclusive/,
     'the pause logged');
$r = $t->patch('/traffic/upstreams/a4/rollout', { action => 'resume' },
               port => 'api');
is($r->{status}, 200, 'resume: 200');
is($r->{json}{state}, 'progressing', 'progressing again');
$r = $t->patch('/traffic/upstreams/a4/rollout', { action => 'pause' },
               port => 'api');
is($r->{json}{state}, 'paused', 'pause');
$r = $t->patch('/traffic/upstreams/a4', { weights => { blue => 95,
               canary => 5 } }, port => 'api');
is($r->{status}, 200, 'paused: weights may change');
$gen = ups('a4')->{generation};
$r = $t->delete('/traffic/upstreams/a4/rollout', port => 'api');
is($r->{status}, 200, 'DELETE: 200');
is($r->{json}{state}, 'aborted', 'aborted');
is_deeply(ups('a4')->{weights}, { blue => 100, canary => 0 },
          'abort: the weights from before the rollout');
is(ups('a4')->{generation}, $gen + 1, 'in one change');
is($t->delete('/traffic/upstreams/a4/rollout', port => 'api')->{status},
   409, 'DELETE with none running: 409');

# force aborts a progressing rollout
is(start_rollout('a4', \%fine)->{status}, 201, 'a4: started again');
$r = $t->patch('/traffic/upstreams/a4', { active => 'blue',
               force => JSON::PP::true }, port => 'api');
is($r->{status}, 200, 'forced weights: 200');
is(TSRollout::get($t, 'a4', %api)->{state}, 'aborted',
   'force aborted the rollout');
like($t->error_log, qr/"a4": rollout aborted by weights forced/,
     'logged');

# promote
is(start_rollout('a4', \%fine)->{status}, 201, 'a4: started once more');
$r = $t->patch('/traffic/upstreams/a4/rollout', { action => 'promote' },
               port => 'api');
is($r->{json}{state}, 'succeeded', 'promote: succeeded');
is_deeply(ups('a4')->{weights}, { blue => 0, canary => 100 },
          'promote: the last step');

# 5. a canary server marked down by the probes

is(start_rollout('a5', \%fine)->{status}, 201, 'a5: started');
$t->set_backend('canary5', healthy => 0);
$doc = drive('a5', until => sub { $_[0]{state} ne 'progressing' },
             what => 'a5 rolled back');
is($doc->{state}, 'rolled_back', 'canary down: rolled back');
like($doc->{reason}, qr/pool "canary" has no live server/, 'the reason');
is(start_rollout('a5', \%fine)->{status}, 409,
   'a pool with no live server: 409');

# 6. bad documents: 400 with the error object, nothing changed

$gen = ups('a1')->{generation};
my $before = TSRollout::get($t, 'a1', %api);
my @bad = (
    [{ %fine, steps => [50, 10] }, 'invalid_steps'],
    [{ %fine, steps => [10, 10] }, 'invalid_steps'],
    [{ %fine, steps => [10, 101] }, 'invalid_steps'],
    [{ %fine, steps => [10.123] }, 'invalid_steps'],
    [{ %fine, steps => [0, 10] }, 'invalid_steps'],
    [{ %fine, steps => [] }, 'invalid_steps'],
    [{ %fine, steps => [(1) x 65] }, 'invalid_steps'],
    [{ %fine, steps => ['10'] }, 'invalid_steps'],
    [{ %fine, interval => '0s' }, 'invalid_duration'],
    [{ %fine, interval => '1000d' }, 'invalid_duration'],
    [{ %fine, interval => 'soon' }, 'invalid_duration'],
    [{ %fine, interval => 60 }, 'invalid_duration'],
    [{ %fine, max_hold => '-1s' }, 'invalid_duration'],
    [{ %fine, min_requests => 0 }, 'invalid_value'],
    [{ %fine, min_requests => 1.5 }, 'invalid_value'],
    [{ %fine, surprise => 1 }, 'unknown_field'],
    [{ %fine, analysis => { max_error_rate => 1 } }, 'unknown_field'],
    [{ %fine, analysis => { max_error_ratio => 2 } }, 'invalid_value'],
    [{ %fine, analysis => { max_p99_vs_baseline => 0 } }, 'invalid_value'],
    [{ %fine, fast_abort => { error_ratio => 0.1 } }, 'missing_field'],
    [{ %fine, fast_abort => { error_ratio => 0.1, window => 5000 } },
     'invalid_value'],
    [{ %fine, pool => 'nosuch' }, 'unknown_pool'],
    [{ %fine, baseline => ['nosuch'] }, 'unknown_pool'],
    [{ %fine, baseline => ['canary'] }, 'invalid_baseline'],
    [{ %fine, baseline => ['blue', 'blue'] }, 'invalid_baseline'],
    [{ %fine, baseline => [] }, 'invalid_type'],
    [{ %fine, pool => undef }, 'invalid_type'],
    [{ baseline => ['blue'], steps => [10] }, 'missing_field'],
    ['[1]', 'invalid_type'],
    ['{"pool":', 'invalid_json'],
);
for my $b (@bad) {
    my ($body, $code) = @$b;
    my $r = $t->put('/traffic/upstreams/a1/rollout', port => 'api',
                    json => $body);
    my $what = ref $body ? JSON::PP->new->canonical->encode($body) : $body;
    $what = substr($what, 0, 60);
    is($r->{status}, 400, "400: $what");
    is($r->{json}{error}{code}, $code, "$code: $what");
}
is(ups('a1')->{generation}, $gen, 'no bad document changed the weights');
is_deeply(TSRollout::get($t, 'a1', %api), $before,
          'nor the last rollout');

$r = $t->patch('/traffic/upstreams/a1/rollout', { action => 'jump' },
               port => 'api');
is($r->{json}{error}{code}, 'invalid_action', 'unknown action: 400');
$r = $t->put('/traffic/upstreams/a1/rollout', \%fine, port => 'api',
             headers => { 'If-Match' => '"1"' });
is($r->{status}, 412, 'If-Match of another generation: 412');
is($t->get('/traffic/upstreams/nosuch/rollout', port => 'api')->{status},
   404, 'unknown upstream: 404');
is($t->http('DELETE', '/traffic/upstreams/a1', port => 'api')->{status},
   405, 'DELETE on the upstream: 405');

# metrics

my $m = $t->get('/traffic/metrics', port => 'api')->{body};
like($m, qr/^traffic_shift_rollouts_total\{upstream="a2",result="rolled_back"\} 1$/m,
     'rollouts_total rolled_back');
like($m, qr/^traffic_shift_rollout_state\{upstream="a1",state="succeeded"\} 1$/m,
     'rollout_state');

$t->allow_log(qr/no live server|failing open|is down/);

done_testing();
