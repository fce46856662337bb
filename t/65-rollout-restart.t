#!/usr/bin/perl

# Rollouts and the state file: every change the driver makes (a step, the
# end, a rollback, a fast abort) is saved without a request; a restart in
# the middle of a rollout resumes its current step and it goes on to the
# end; a restart after a rollback shows the restored weights and the
# rolled back rollout; a paused one stays paused; an invalid rollout in
# the file makes the upstream's state ignored, logged.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use TSTest;
use TSRollout;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 canary1);

my $file = $t->testdir . '/state.json';

$t->write_config(<<"EOF");
http {
    traffic_shift_state $file;

    upstream b1 { server 127.0.0.1:%%PORT_blue1%%; }
    upstream c1 { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app { pool blue b1 weight=100; pool canary c1; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
$t->start;

my %api = (api => '/traffic', port => 'api');

sub drive { return TSRollout::drive($t, 'app', %api, @_) }
sub rollout { return TSRollout::get($t, 'app', %api) }
sub weights {
    return $t->get('/traffic/upstreams/app', port => 'api')->{json}{weights};
}

sub saved {
    my $text = $t->read_file($file) // return undef;
    my $s = eval { JSON::PP->new->decode($text) } // return undef;
    return $s->{upstreams}{app}{rollout};
}

sub wait_saved {
    my ($cond, $what) = @_;
    return $t->wait_for(sub { my $ro = saved(); $ro && $cond->($ro) },
                        what => $what, timeout => 10);
}

sub restart {
    $t->stop;
    return $t->start;
}

# 1. a restart at step 2 of 4: the step starts again, the rollout ends

my %doc = (
    pool => 'canary', baseline => ['blue'], steps => [10, 30, 60, 100],
    interval => '1s', min_requests => 3,
    analysis => { max_error_ratio => 0.5 },
    fast_abort => { error_ratio => 0.5, window => 20 },
);

is($t->put('/traffic/upstreams/app/rollout', \%doc, port => 'api')
   ->{status}, 201, 'started');
my $id = rollout()->{id};

ok(drive(until => sub { $_[0]{step} >= 2 }, what => 'step 2'), 'step 2');
ok(wait_saved(sub { $_[0]{step} == 2 }, 'step 2 saved'),
   'step 2 saved by the driver, without a request');

my $ro = saved();
is($ro->{state}, 'progressing', 'saved: progressing');
is_deeply($ro->{steps}, [10, 30, 60, 100], 'saved: the steps');
is_deeply($ro->{before}, { blue => 100, canary => 0 },
          'saved: the weights before');
is(scalar @{$ro->{history}}, 1, 'saved: one step in the history');
is($ro->{history}[0]{verdict}, 'pass', 'saved: step 1 passed');
is($ro->{interval_ms}, 1000, 'saved: the interval in milliseconds');
is($ro->{fast_abort_window}, 20, 'saved: the fast abort window');

ok(restart(), 'restarted at step 2');
my $restored = qr/traffic_shift "app": rollout of pool "canary" /
    . qr/restored from "[^"]+", progressing, step 2 of 4, /
    . qr/the step starts again now/;
like($t->error_log, qr/$restored/,
     'the restored rollout is logged');

my $doc = rollout();
is($doc->{state}, 'progressing', 'after the restart: progressing');
is($doc->{step}, 2, 'after the restart: step 2');
is($doc->{id}, $id, 'after the restart: the same rollout');
is($doc->{window}{pool}{responses}, 0, 'after the restart: a fresh window');
is(weights()->{canary}, 30, 'after the restart: the weights of step 2');

$doc = drive(until => sub { $_[0]{state} ne 'progressing' },
             what => 'the end');
is($doc->{state}, 'succeeded', 'succeeded after the restart');
is_deeply([map { $_->{step} } @{$doc->{history}}], [1, 2, 3, 4],
          'every step once in the history');
is_deeply([map { $_->{weight} } @{$doc->{history}}], [10, 30, 60, 100],
          'with the weights of the steps');
is_deeply(weights(), { blue => 0, canary => 100 }, 'the last step\'s weights');
ok(wait_saved(sub { $_[0]{state} eq 'succeeded' }, 'the end saved'),
   'the end saved');

ok(restart(), 'restarted after the end');
$doc = rollout();
is($doc && $doc->{state}, 'succeeded', 'a finished rollout stays readable');
is_deeply(weights(), { blue => 0, canary => 100 }, 'and its weights');

# 2. a fast abort: the rollback is saved; a restart shows it

$doc{pool} = 'blue';
$doc{baseline} = ['canary'];
is($t->put('/traffic/upstreams/app/rollout', \%doc, port => 'api')
   ->{status}, 201, 'a second rollout');
$t->set_backend('blue1', failing => 1);
$doc = drive(until => sub { $_[0]{state} ne 'progressing' }, poll => 1,
             what => 'the fast abort');
is($doc->{state}, 'rolled_back', 'rolled back by the fast abort');
ok(wait_saved(sub { $_[0]{state} eq 'rolled_back' }, 'the rollback saved'),
   'the rollback saved without a request');
$t->set_backend('blue1', failing => 0);

ok(restart(), 'restarted after the rollback');
is_deeply(weights(), { blue => 0, canary => 100 },
          'the weights from before the rollout');
$doc = rollout();
is($doc->{state}, 'rolled_back', 'the rollout: rolled back');
like($doc->{reason}, qr/^fast abort: /, 'with its reason');

# 3. a paused rollout stays paused

is($t->put('/traffic/upstreams/app/rollout', \%doc, port => 'api')
   ->{status}, 201, 'a third rollout');
is($t->patch('/traffic/upstreams/app/rollout', { action => 'pause' },
             port => 'api')->{status}, 200, 'paused');
ok(restart(), 'restarted while paused');
$doc = rollout();
is($doc->{state}, 'paused', 'still paused');
is($doc->{step}, 1, 'at step 1');
is(weights()->{blue}, 10, 'with the weights of step 1');
sleep 2;
is(rollout()->{state}, 'paused', 'and it does not move');
is($t->patch('/traffic/upstreams/app/rollout', { action => 'resume' },
             port => 'api')->{status}, 200, 'resumed');
$doc = drive(until => sub { $_[0]{state} ne 'progressing' },
             what => 'the end after resume');
is($doc->{state}, 'succeeded', 'and it ends');

# 4. an invalid rollout in the file: the upstream's state is ignored

$t->stop;
my $s = JSON::PP->new->decode($t->read_file($file));
$s->{upstreams}{app}{rollout}{state} = 'bogus';
$s->{upstreams}{app}{rollout}{steps} = [50, 20];
open(my $fh, '>', $file) or die "$file: $!";
print $fh JSON::PP->new->encode($s);
close $fh;
ok($t->start, 'started with an invalid rollout in the file');
like($t->error_log, qr/invalid state of upstream "app", ignored/,
     'logged');
is_deeply(weights(), { blue => 100, canary => 0 }, 'the configured weights');
is($t->get('/traffic/upstreams/app/rollout', port => 'api', quiet => 1)
   ->{status}, 404, 'no rollout');

# a rollout written by hand, edited, into the file of a stopped nginx
sub write_rollout {
    my ($edit) = @_;
    $t->stop;
    my $st = JSON::PP->new->decode($t->read_file($file));
    my $ro = {
        id => 9, state => 'paused', ramp => JSON::PP::false, pool => 'canary',
        baseline => ['blue'], steps => [10, 90], step => 2,
        interval_ms => 1000, min_requests => 1, started => 1,
        step_started => 1, ended => 0, reason => 'paused by hand',
        fast_abort_ratio_bp => 2000, fast_abort_window => 50,
        before => { blue => 100, canary => 0 }, history => [],
    };
    $edit->($ro);
    $st->{upstreams}{app}{weights} = { blue => 10, canary => 90 };
    $st->{upstreams}{app}{source} = 'api';
    $st->{upstreams}{app}{rollout} = $ro;
    open(my $out, '>', $file) or die "$file: $!";
    print $out JSON::PP->new->encode($st);
    close $out;
}

for my $bad (
    [ 'an unknown pool', sub { $_[0]{pool} = 'green' } ],
    [ 'a step past the steps', sub { $_[0]{step} = 9 } ],
    [ 'steps that go down', sub { $_[0]{steps} = [50, 20] } ],
    [ 'weights before that do not total 100',
      sub { $_[0]{before} = { blue => 50, canary => 0 } } ],
    [ 'a fast abort ratio without a window',
      sub { delete $_[0]{fast_abort_window} } ],
    [ 'a history entry without a verdict',
      sub { $_[0]{history} = [{ step => 1, weight => 10, time => 1 }] } ],
    [ 'a reason that is not a string', sub { $_[0]{reason} = 5 } ],
    [ 'no started', sub { delete $_[0]{started} } ],
)
{
    my ($what, $edit) = @$bad;
    write_rollout($edit);
    my $mark = length $t->error_log;
    ok($t->start, "started with $what");
    like($t->error_log(since => $mark),
         qr/invalid state of upstream "app", ignored/, "$what: logged");
    is(weights()->{blue}, 100, "$what: the configured weights");
}

# a valid one is restored as it is

write_rollout(sub { });
ok($t->start, 'started with a rollout written by hand');
$doc = rollout();
is($doc->{state}, 'paused', 'restored: paused');
is($doc->{reason}, 'paused by hand', 'restored: the reason');
is($doc->{fast_abort}{error_ratio}, 0.2, 'restored: the fast abort');
is(weights()->{canary}, 90, 'restored: the weights');

$t->stop;
unlike($t->error_log, qr/\[(alert|emerg|crit)\]|AddressSanitizer/,
       'no alert, crit or sanitizer report');

done_testing();
