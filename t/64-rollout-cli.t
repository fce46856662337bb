#!/usr/bin/perl

# scripts/traffic-shift rollout and flip --ramp against a running nginx:
# start --wait on a healthy canary follows it step by step and exits 0; on
# a failing canary it exits 4 with the reason; an aborted rollout exits 5;
# status, pause, resume, promote, abort; bad options are exit 2 with
# nothing sent.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use TSTest;
use TSCli qw(cli);
use TSRollout;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 canary1 green1);

$t->write_config(<<'EOF');
http {
    upstream b1 { server 127.0.0.1:%%PORT_blue1%%; }
    upstream c1 { server 127.0.0.1:%%PORT_canary1%%; }
    upstream g1 { server 127.0.0.1:%%PORT_green1%%; }

    traffic_shift app {
        pool blue b1 weight=100; pool canary c1; pool green g1;
    }

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

sub weights {
    return $t->get('/traffic/upstreams/app', port => 'api')->{json}{weights};
}

# runs the CLI while traffic flows
sub with_traffic {
    my (@args) = @_;
    my $pid = TSRollout::traffic($t);
    my $r = cli($t, @args);
    TSRollout::stop_traffic($pid);
    return $r;
}

my @start = ('rollout', 'start', 'app', '--pool', 'canary',
             '--steps', '20,50,100', '--interval', '1s',
             '--min-requests', '5', '--max-error-ratio', '0.05',
             '--fast-abort', '0.5/10', '--wait', '--timeout', '60');

# 1. a healthy canary: exit 0, a line per step and verdict

my $r = with_traffic(@start);
is($r->{rc}, 0, 'start --wait, a healthy canary: exit 0') or diag($r->{err});
like($r->{out}, qr/^app: rollout \d+ of pool "canary" started$/m,
     'the start');
like($r->{out}, qr/^step 1 of 3: 20% to pool "canary" until /m,
     'step 1 shown');
like($r->{out}, qr/^step 1 \(20%\): pass; pool: \d+ responses, 0 errors/m,
     'its verdict');
like($r->{out}, qr/^step 3 \(100%\): pass;/m, 'the last step');
like($r->{out}, qr/^rollout succeeded$/m, 'and the end');
is_deeply(weights(), { blue => 0, canary => 100, green => 0 },
          'the canary has the traffic');

$r = cli($t, 'rollout', 'status', 'app');
is($r->{rc}, 0, 'status: exit 0');
like($r->{out}, qr/^app: rollout \d+ of pool "canary" succeeded, step 3 of 3 /m,
     'status: the summary');
like($r->{out}, qr/^  step 2 \(50%\): pass;/m, 'status: the history');

$r = cli($t, 'rollout', 'status', 'app', '--wait');
is($r->{rc}, 0, 'status --wait on a succeeded rollout: exit 0 at once');

# 2. a failing canary (baseline given): exit 4, the reason

$r = cli($t, 'flip', 'app', 'blue');
is($r->{rc}, 0, 'back to blue');
$t->set_backend('canary1', failing => 1);
$r = with_traffic(@start, '--baseline', 'blue');
is($r->{rc}, 4, 'start --wait, a failing canary: exit 4');
like($r->{err}, qr/^traffic-shift: rollout rolled back: fast abort: \d+ errors/m,
     'the reason on stderr');
like($r->{out}, qr/^rollout rolled_back$/m, 'the end on stdout');
is(weights()->{blue}, 100, 'the weights from before');
$t->set_backend('canary1', failing => 0);

# 3. --json BODY, pause, resume, abort: exit 5 for a waiter

$r = cli($t, 'rollout', 'start', 'app', '--json',
         '{"pool":"canary","baseline":["blue"],"steps":[10,100],'
         . '"interval":"60s"}');
is($r->{rc}, 0, 'start --json BODY') or diag($r->{err});
like($r->{out}, qr/progressing, step 1 of 2 \(10%\), baseline blue/,
     'the summary');
is(weights()->{canary}, 10, 'step 1');

$r = cli($t, 'rollout', 'pause', 'app');
is($r->{rc}, 0, 'pause');
like($r->{out}, qr/ paused, step 1 of 2/, 'paused');
$r = cli($t, 'rollout', 'resume', 'app');
is($r->{rc}, 0, 'resume');
like($r->{out}, qr/ progressing, step 1 of 2/, 'progressing again');
$r = cli($t, 'rollout', 'start', 'app', '--json', '{"pool":"canary",'
         . '"baseline":["blue"],"steps":[10,100]}');
is($r->{rc}, 6, 'a second start: refused, exit 6');
like($r->{err}, qr/rollout_in_progress, HTTP 409/, 'with the API\'s error');

my $pid = fork() // die;
if ($pid == 0) {
    sleep 1;
    cli($t, 'rollout', 'abort', 'app');
    POSIX::_exit(0);
}
$r = cli($t, 'rollout', 'status', 'app', '--wait', '--timeout', '20');
waitpid($pid, 0);
is($r->{rc}, 5, 'status --wait on an aborted rollout: exit 5');
like($r->{err}, qr/^traffic-shift: rollout aborted: aborted by client/m,
     'the reason');
is(weights()->{blue}, 100, 'aborted: the weights from before');

$r = cli($t, 'rollout', 'start', 'app', '--pool', 'canary',
         '--steps', '10,100', '--interval', '60s');
is($r->{rc}, 0, 'start without --baseline: the pools with weight');
like($r->{out}, qr/baseline blue$/m, 'baseline blue');
$r = cli($t, 'rollout', 'status', 'app', '--wait', '--timeout', '1');
is($r->{rc}, 10, 'status --wait --timeout: exit 10 while it progresses');
like($r->{err}, qr/still progresses after 1s; it goes on in nginx/,
     'and says so');
$r = cli($t, 'rollout', 'promote', 'app', '--json');
is($r->{rc}, 0, 'promote --json');
is(eval { JSON::PP->new->decode($r->{out})->{state} }, 'succeeded',
   'the JSON document');

# 4. flip --ramp --wait

$r = with_traffic('flip', 'app', 'green', '--ramp', '2s', '--wait');
is($r->{rc}, 0, 'flip --ramp --wait: exit 0') or diag($r->{err});
like($r->{out}, qr/^app: ramp to pool "green" over 2s started$/m, 'started');
like($r->{out}, qr/^step 2 \(100%\): pass;/m, 'two steps');
is(weights()->{green}, 100, 'green has the traffic');

# 5. bad usage: exit 2, nothing sent (commas in steps are meant)

no warnings 'qw';

my $gen = $t->get('/traffic/upstreams/app', port => 'api')->{json}
    {generation};
for my $bad (
    [ 'no --steps', [qw(rollout start app --pool canary)] ],
    [ 'a step over 100', [qw(rollout start app --pool canary
                             --steps 5,500)] ],
    [ 'steps that are not numbers', [qw(rollout start app --pool canary
                                        --steps a,b)] ],
    [ 'a bad interval', [qw(rollout start app --pool canary --steps 5,100
                            --interval soon)] ],
    [ 'a bad fast abort', [qw(rollout start app --pool canary --steps 5,100
                              --fast-abort 0.2)] ],
    [ 'a bad ratio', [qw(rollout start app --pool canary --steps 5,100
                         --max-error-ratio x)] ],
    [ 'a body that is not JSON', ['rollout', 'start', 'app', '--json',
                                  '{nope'] ],
    [ 'a body and options', ['rollout', 'start', 'app', '--pool', 'canary',
                             '--json', '{"pool":"canary"}'] ],
    [ 'an unknown action', [qw(rollout restart app)] ],
    [ 'settings on pause', [qw(rollout pause app --steps 5,100)] ],
    [ '--wait on abort', [qw(rollout abort app --wait)] ],
    [ 'rollout options elsewhere', [qw(set app blue=100 --pool canary)] ],
    [ '--ramp without flip', [qw(set app blue=100 --ramp 10s)] ],
    [ 'a bad ramp', [qw(flip app blue --ramp soon)] ],
    [ '--wait without --ramp', [qw(flip app blue --wait)] ],
    [ '--force with --ramp', [qw(flip app blue --ramp 10s --force)] ],
)
{
    my ($what, $args) = @$bad;
    $r = cli($t, @$args);
    is($r->{rc}, 2, "$what: exit 2");
}
is($t->get('/traffic/upstreams/app', port => 'api')->{json}{generation},
   $gen, 'nothing was changed');

$r = cli($t, 'help', 'rollout');
is($r->{rc}, 0, 'help rollout');
like($r->{out}, qr/exits 0 if it succeeded, 4 if it was rolled back, 5 if/,
     'the exit codes in the help');

$t->stop;
unlike($t->error_log, qr/\[(alert|emerg|crit)\]|AddressSanitizer/,
       'no alert, crit or sanitizer report');

done_testing();
