#!/usr/bin/perl

# scripts/traffic-shift against a running nginx: every command, the
# traffic it changes, refused changes (exit 6 to 9 by HTTP status, with the
# API's error text), an API that cannot be reached (exit 3) or too slow
# (exit 10), bad usage (exit 2, nothing sent), --help, and concurrent
# canary moves that never lose an update.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSCli qw(cli missing_features run_capture $CLI);
use JSON::PP ();

my $JSON = JSON::PP->new;

my $t = TSTest->new(workers => 1);
$t->backend($_) for qw(blue1 blue2 green1 canary1);
$t->backend('slow1', delay => 5);
$t->port('api');

my $missing = missing_features($t);
plan(skip_all => 'needs the admin API (traffic_shift_api), not in this '
    . 'build yet') if $missing->{traffic_shift_api};
my $hc = !$missing->{health_check};

my $template = <<'EOF';
http {
    traffic_shift_state %%TESTDIR%%/no-such-dir/state.json;

    upstream u_blue   { server 127.0.0.1:%%PORT_blue1%%;
                        server 127.0.0.1:%%PORT_blue2%%; }
    upstream u_green  { server 127.0.0.1:%%PORT_green1%%; HEALTH }
    upstream u_canary { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app {
        pool blue   u_blue   weight=100;
        pool green  u_green;
        pool canary u_canary;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / {
            proxy_pass http://app;
            add_header X-Pool $traffic_shift_pool always;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
        location /ro/      { traffic_shift_api; }
    }
}
EOF
my $health = $hc ? 'health_check uri=/healthz interval=100ms;' : '';
$template =~ s/HEALTH/$health/;
$t->write_config($template);
$t->start;

# the state file cannot be written (its directory does not exist): every
# change is live and the API says it is not saved
$t->allow_log(qr/traffic_shift_state/);

my $api = 'http://127.0.0.1:' . $t->port('api') . '/traffic/';
my $dead = 'http://127.0.0.1:' . $t->port('closed') . '/traffic/';

sub state {
    my $r = $t->get('/traffic/upstreams/app', port => 'api');
    return $r->{json} // {};
}

sub weights { state()->{weights} }
sub generation { state()->{generation} }

sub split100 {
    my $c = $t->count_backends(n => 100);
    return join ' ', map { "$_=$c->{$_}" } sort keys %$c;
}

# the exit code of an API error, by HTTP status (scripts/traffic-shift)
my %EXIT = (400 => 8, 401 => 7, 403 => 7, 404 => 9, 409 => 6, 412 => 6);

sub refused {
    my ($r, $code, $status, $name) = @_;
    my $rc = $EXIT{$status} // 1;
    is($r->{rc}, $rc, "$name: exit $rc");
    like($r->{err}, qr/^traffic-shift: .+ \($code, HTTP $status\)$/m,
        "$name: the API's error text, $code, HTTP $status on stderr");
    is($r->{out}, '', "$name: nothing on stdout");
}

###########################################################################
# bad usage: exit 2, and nothing is sent (the API URL is dead: a request
# would give exit 3)

{
    my @cases = (
        [[], 'no command'],
        [['frobnicate'], 'unknown command'],
        [['status', '--frob'], 'unknown option'],
        [['status', '--api'], 'option without its value'],
        [['status', 'a', 'b'], 'status with two upstreams'],
        [['set', 'app'], 'set without weights'],
        [['set', 'app', 'blue'], 'set with a pool without =PCT'],
        [['set', 'app', 'blue=abc'], 'set with a weight that is no number'],
        [['set', 'app', 'blue=100.001'], 'set with 3 decimals'],
        [['set', 'app', 'blue=101'], 'set with a weight over 100'],
        [['set', 'app', 'blue=-1'], 'set with a negative weight'],
        [['set', 'app', 'blue=50', 'blue=50'], 'set with a pool twice'],
        [['set', 'app', 'bad/pool=100'], 'set with an invalid pool name'],
        [['flip', 'app'], 'flip without pool'],
        [['flip', 'app', 'green', 'blue'], 'flip with two pools'],
        [['canary', 'app', 'canary'], 'canary without percentage'],
        [['canary', 'app', 'canary', 'ten'], 'canary with a bad percentage'],
        [['canary', 'app', 'canary', '0'], 'canary moving 0'],
        [['wait-healthy'], 'wait-healthy without upstream'],
        [['wait-healthy', 'app', 'blue', '--timeout', 'x'],
         'wait-healthy with a bad timeout'],
        [['status', '--timeout', '5'], '--timeout with status'],
        [['status', '--force'], '--force with status'],
        [['flip', 'app', 'green', '--if-match', 'abc'], 'bad --if-match'],
        [['drain', 'u_blue'], 'drain without server'],
        [['status', '--api', 'ftp://127.0.0.1/'], 'an API URL not http'],
    );
    for my $c (@cases) {
        my ($args, $name) = @$c;
        my $r = cli($t, $dead, @$args);
        is($r->{rc}, 2, "usage: $name: exit 2")
            or diag("traffic-shift @$args: $r->{err}");
        like($r->{err}, qr/^(traffic-shift: |Usage: )/m,
            "usage: $name: says why on stderr");
    }
}

###########################################################################
# --help

{
    my $r = cli($t, $dead, '--help');
    is($r->{rc}, 0, '--help: exit 0');
    like($r->{out}, qr/^Commands:/m, '--help lists the commands');
    like($r->{out}, qr/^Exit codes:/m, '--help gives the exit codes');

    for my $cmd (qw(status health set flip canary wait-healthy drain
                    undrain)) {
        my $a = cli($t, $dead, $cmd, '--help');
        my $b = cli($t, $dead, 'help', $cmd);
        is($a->{rc}, 0, "$cmd --help: exit 0");
        like($a->{out}, qr/^(?:Usage:)?\s+traffic-shift \Q$cmd\E /m,
            "$cmd --help prints its usage");
        is($b->{out}, $a->{out}, "help $cmd is the same text");
    }
    is(cli($t, $dead, 'help', 'nothing')->{rc}, 2, 'help of no command: 2');
}

###########################################################################
# the API cannot be reached: exit 3

{
    my $r = cli($t, $dead, 'status');
    is($r->{rc}, 3, 'closed port: exit 3');
    like($r->{err}, qr/^traffic-shift: cannot reach the API at \Q$dead\E/,
        'closed port: says the API cannot be reached');

    $r = cli($t, $dead, 'flip', 'app', 'green');
    is($r->{rc}, 3, 'closed port, flip: exit 3');

    my $slow = 'http://127.0.0.1:' . $t->port('slow1') . '/';
    $r = cli($t, $slow, 'status', '--max-time', '0.5');
    is($r->{rc}, 10, 'an API that does not answer within --max-time: '
        . 'exit 10');
    ok($r->{secs} < 4, sprintf('... after %.1fs', $r->{secs}));

    my $other = 'http://127.0.0.1:' . $t->port('blue1') . '/traffic/';
    $r = cli($t, $other, 'status');
    is($r->{rc}, 3, 'a server that is not the API: exit 3');
    like($r->{err}, qr/no traffic_shift API/, '... says so');

    $r = cli($t, "http://127.0.0.1:" . $t->port('api') . '/nothing/',
        'status');
    is($r->{rc}, 3, 'a location of nginx that is not the API: exit 3');
}

###########################################################################
# status

{
    my $gen = generation();
    my $r = cli($t, $api, 'status');
    is($r->{rc}, 0, 'status: exit 0');
    like($r->{out}, qr/^app: generation $gen, weights from config/m,
        'status: the upstream, its generation and source');
    like($r->{out}, qr/^\s+POOL\s+WEIGHT\s+UPSTREAM\s+SERVERS LIVE$/m,
        'status: a header line');
    like($r->{out}, qr/^\s+blue\s+100\s+u_blue\s+2\/2$/m, 'status: blue');
    like($r->{out}, qr/^\s+green\s+0\s+u_green\s+1\/1$/m, 'status: green');
    like($r->{out}, qr/^\s+canary\s+0\s+u_canary\s+1\/1$/m,
        'status: canary');

    my $one = cli($t, $api, 'status', 'app');
    is($one->{out}, $r->{out}, 'status app: the same table');

    $r = cli($t, $api, 'status', 'app', '--json');
    is($r->{rc}, 0, 'status app --json: exit 0');
    is_deeply($JSON->decode($r->{out}), state(),
        'status app --json prints GET /upstreams/app');

    $r = cli($t, $api, 'status', '--json');
    my $all = $JSON->decode($r->{out});
    is_deeply([keys %$all], ['app'], 'status --json: every upstream');

    refused(cli($t, $api, 'status', 'nope'), 'unknown_upstream', 404,
        'status of an unknown upstream');

    $r = cli($t, $api, 'status', '-q');
    is_deeply([$r->{rc}, $r->{out}], [0, ''], 'status -q: nothing printed');
}

###########################################################################
# set

{
    my $r = cli($t, $api, 'set', 'app', 'blue=90', 'canary=10');
    is($r->{rc}, 0, 'set app blue=90 canary=10: exit 0') or diag($r->{err});
    like($r->{out}, qr/^\s+canary\s+10\s/m, 'set prints the new weights');
    like($r->{err}, qr/^traffic-shift: warning: .*not saved/m,
        'set warns that the state file was not written');
    is(split100(), 'blue1=45 blue2=45 canary1=10',
        '100 requests: 90 to blue, 10 to canary');

    $r = cli($t, $api, 'set', 'app', 'blue=87.5', 'canary=12.5', '--json');
    is($r->{rc}, 0, 'set with decimals: exit 0');
    is_deeply($JSON->decode($r->{out})->{weights},
        { blue => 87.5, green => 0, canary => 12.5 },
        'set --json prints the new state: 87.5 / 12.5');
    $r = cli($t, $api, 'set', 'app', 'blue=66.67', 'canary=33.33');
    like($r->{out}, qr/^\s+canary\s+33\.33\s/m, 'two decimals: 33.33');

    my $gen = generation();
    refused(cli($t, $api, 'set', 'app', 'blue=90', 'canary=5'),
        'invalid_total', 400, 'weights totalling 95');
    refused(cli($t, $api, 'set', 'app', 'blue=50', 'nope=50'),
        'unknown_pool', 404, 'an unknown pool');
    refused(cli($t, $api, 'set', 'nope', 'blue=100'),
        'unknown_upstream', 404, 'an unknown upstream');
    refused(cli($t, $api, 'set', 'app', 'blue=100', '--if-match',
        $gen - 1), 'precondition_failed', 412, 'a stale --if-match');
    refused(cli($t, 'http://127.0.0.1:' . $t->port('api')
        . '/ro/', 'set', 'app', 'blue=100'), 'read_only', 403,
        'a change through the read-only location');
    is(generation(), $gen, 'the refused changes changed nothing');

    $r = cli($t, $api, 'set', 'app', 'blue=100', '--if-match', $gen);
    is($r->{rc}, 0, 'the current generation as --if-match: exit 0');
    is(generation(), $gen + 1, 'the generation moved by one');
    is(split100(), 'blue1=50 blue2=50', 'all to blue');
}

###########################################################################
# drain, undrain, and a pool with no live server (409, --force)

{
    my $canary = '127.0.0.1:' . $t->port('canary1');
    my $r = cli($t, $api, 'drain', 'u_canary', $canary);
    is($r->{rc}, 0, 'drain u_canary ADDRESS: exit 0') or diag($r->{err});
    like($r->{out}, qr/admin_down/, 'drain says the server is admin_down');

    my $gen = generation();
    $r = cli($t, $api, 'set', 'app', 'blue=90', 'canary=10');
    refused($r, 'pool_unavailable', 409, 'traffic to a pool with no live '
        . 'server');
    like($r->{err}, qr/--force/, '... and says --force would do it');
    is(generation(), $gen, '... nothing changed');

    $r = cli($t, $api, 'canary', 'app', 'canary', '10');
    is($r->{rc}, 6, 'canary to that pool: refused too, exit 6');

    $r = cli($t, $api, 'set', 'app', 'blue=90', 'canary=10', '--force');
    is($r->{rc}, 0, '--force: exit 0');
    like($r->{out}, qr/^\s+canary\s+10\s+u_canary\s+0\/1/m,
        'status shows 0/1 live for the canary');
    is(split100(), 'blue1=50 blue2=50',
        'a pool with no live server gets no request');

    $r = cli($t, $api, 'undrain', 'u_canary', '0');
    is($r->{rc}, 0, 'undrain u_canary 0 (by id): exit 0');
    like($r->{out}, qr/ is up$/, 'undrain says the server is up');
    is(split100(), 'blue1=45 blue2=45 canary1=10', 'the canary is back');

    refused(cli($t, $api, 'drain', 'u_canary', '7'), 'unknown_server', 404,
        'drain an unknown server id');
    $r = cli($t, $api, 'drain', 'u_canary', '127.0.0.1:1');
    is($r->{rc}, 9, 'drain an unknown address: exit 9');
    like($r->{err}, qr/has no server "127\.0\.0\.1:1"/, '... says so');

    ok(cli($t, $api, 'set', 'app', 'blue=100')->{rc} == 0, 'blue 100');
}

###########################################################################
# flip

{
    my $r = cli($t, $api, 'flip', 'app', 'green');
    is($r->{rc}, 0, 'flip app green: exit 0') or diag($r->{err});
    is(split100(), 'green1=100', 'all to green');
    is_deeply(weights(), { blue => 0, green => 100, canary => 0 },
        'green 100, the others 0');

    refused(cli($t, $api, 'flip', 'app', 'nope'), 'unknown_pool', 404,
        'flip to an unknown pool');

    $r = cli($t, $api, 'flip', 'app', 'blue');
    is($r->{rc}, 0, 'flip back to blue');
    is(split100(), 'blue1=50 blue2=50', 'all to blue');
}

###########################################################################
# canary

{
    my $r = cli($t, $api, 'canary', 'app', 'canary', '10');
    is($r->{rc}, 0, 'canary app canary 10: exit 0') or diag($r->{err});
    like($r->{out}, qr/^app: canary 0% -> 10%, blue 100% -> 90%$/m,
        'canary says what moved');
    is_deeply(weights(), { blue => 90, green => 0, canary => 10 },
        'blue 90, canary 10');

    $r = cli($t, $api, 'canary', 'app', 'green', '20');
    is_deeply(weights(), { blue => 70, green => 20, canary => 10 },
        'canary app green 20 takes from the largest pool, blue');

    $r = cli($t, $api, 'canary', 'app', 'canary', '2.5');
    is_deeply(weights(), { blue => 67.5, green => 20, canary => 12.5 },
        'canary app canary 2.5: decimals');

    my $gen = generation();
    $r = cli($t, $api, 'canary', 'app', 'canary', '80');
    is($r->{rc}, 6, 'moving more than the largest pool has: exit 6');
    my $why = 'cannot move 80% to "canary": the largest other pool, '
        . '"blue", has 67.5%';
    like($r->{err}, qr/\Q$why\E/, '... says why');
    is(generation(), $gen, '... nothing changed');

    refused(cli($t, $api, 'canary', 'app', 'canary', '5', '--if-match',
        $gen - 1), 'precondition_failed', 412, 'canary with a stale '
        . '--if-match');

    $r = cli($t, $api, 'canary', 'app', 'nope', '5');
    is($r->{rc}, 9, 'canary to an unknown pool: exit 9');
    like($r->{err}, qr/no pool "nope" \(pools: blue, green, canary\)/,
        '... names the pools');

    $r = cli($t, $api, 'canary', 'app', 'canary', '50', '--to');
    is($r->{rc}, 0, 'canary --to 50: exit 0');
    is_deeply(weights(), { blue => 30, green => 20, canary => 50 },
        'canary 50: the difference taken from blue');

    $gen = generation();
    $r = cli($t, $api, 'canary', 'app', 'canary', '50', '--to');
    is($r->{rc}, 0, 'canary --to the same share: exit 0');
    like($r->{out}, qr/already at 50%/, '... nothing to change');
    is(generation(), $gen, '... and nothing changed');

    $r = cli($t, $api, 'canary', 'app', 'canary', '0', '--to');
    is_deeply(weights(), { blue => 80, green => 20, canary => 0 },
        'canary --to 0 gives the share back to the largest other pool');

    ok(cli($t, $api, 'set', 'app', 'blue=100')->{rc} == 0, 'blue 100');
}

###########################################################################
# concurrent canary moves: each one reads the generation and sends it as
# If-Match, so none is lost: the canary grows by exactly the moves that
# succeeded, the others fail with 412 and exit 6; with --retry, each reads
# the generation again and every move is made

{
    my $N = 6;
    my @kids;
    for my $i (1 .. $N) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            my $r = cli($t, $api, 'canary', 'app', 'canary', '1', '-q');
            open(my $fh, '>', $t->testdir . "/race-$i") or POSIX::_exit(9);
            print $fh "$r->{rc}\n$r->{err}";
            close $fh;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    waitpid($_, 0) for @kids;

    my ($ok, $lost, $bad) = (0, 0, 0);
    for my $i (1 .. $N) {
        my $text = $t->read_file("race-$i") // '';
        my ($rc, $err) = split /\n/, $text, 2;
        if ($rc eq '0') {
            $ok++;
        } elsif ($rc eq '6' && $err =~ /precondition_failed, HTTP 412/) {
            $lost++;
        } else {
            $bad++;
            diag("concurrent canary $i: exit $rc: $err");
        }
    }
    is($bad, 0, "$N concurrent canary moves: each exit 0 or 412 and exit 6");
    ok($ok >= 1, "$ok succeeded, $lost refused as concurrent");
    is(weights()->{canary}, $ok, "the canary has exactly $ok%");

    ok(cli($t, $api, 'set', 'app', 'blue=100')->{rc} == 0, 'blue 100');

    @kids = ();
    for my $i (1 .. $N) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            my $r = cli($t, $api, { TRAFFIC_SHIFT_RETRY_DELAY => '0.05' },
                'canary', 'app', 'canary', '1', '--retry', '8');
            open(my $fh, '>', $t->testdir . "/retry-$i") or POSIX::_exit(9);
            print $fh "$r->{rc}
$r->{err}";
            close $fh;
            POSIX::_exit(0);
        }
        push @kids, $pid;
    }
    waitpid($_, 0) for @kids;
    my ($retried, $failed) = (0, 0);
    for my $i (1 .. $N) {
        my ($rc, $err) = split /
/, $t->read_file("retry-$i") // '', 2;
        $failed++, diag("canary --retry $i: exit $rc: $err") if $rc ne '0';
        $retried++ if ($err // '') =~ /^traffic-shift: retry 1 of 8 in /m;
    }
    is($failed, 0, "$N concurrent canary moves with --retry: each exit 0");
    is(weights()->{canary}, $N, "the canary has $N% ($retried retried)");

    ok(cli($t, $api, 'set', 'app', 'blue=100')->{rc} == 0, 'blue 100');
}

###########################################################################
# wait-healthy

{
    my $r = cli($t, $api, 'wait-healthy', 'app', 'blue');
    is($r->{rc}, 0, 'wait-healthy app blue: exit 0');
    like($r->{out}, qr/pool "blue" \(u_blue\): 2 of 2 servers up/,
        '... 2 of 2 up');

    $r = cli($t, $api, 'wait-healthy', 'u_blue');
    is($r->{rc}, 0, 'wait-healthy of an upstream{} block: exit 0');

    my $blue2 = '127.0.0.1:' . $t->port('blue2');
    ok(cli($t, $api, 'drain', 'u_blue', $blue2)->{rc} == 0, 'drain blue2');
    $r = cli($t, $api, 'wait-healthy', 'app', 'blue', '--timeout', '1',
        '--interval', '0.2');
    is($r->{rc}, 10, 'a drained server: wait-healthy times out, exit 10');
    ok($r->{secs} >= 1 && $r->{secs} < 5,
        sprintf('... after %.1fs (--timeout 1)', $r->{secs}));
    like($r->{err}, qr/not healthy after 1s: \Q$blue2\E is admin_down/,
        '... names the server and its state');

    # undrain while wait-healthy polls: it returns once the server is up
    my $polls = sub {
        my $log = $t->read_file('access.log') // '';
        return scalar(() = $log =~ m{"GET /traffic/health/u_blue }g);
    };
    my $before = $polls->();
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        my $w = cli($t, $api, 'wait-healthy', 'app', 'blue', '--timeout',
            '20', '--interval', '0.1');
        POSIX::_exit($w->{rc});
    }
    ok($t->wait_for(sub { $polls->() > $before }, timeout => 10,
        what => 'wait-healthy polling'), 'wait-healthy polls');
    ok(cli($t, $api, 'undrain', 'u_blue', $blue2)->{rc} == 0, 'undrain');
    waitpid($pid, 0);
    is($? >> 8, 0, 'wait-healthy that was polling returns 0');

    refused(cli($t, $api, 'wait-healthy', 'nope', 'blue'),
        'unknown_upstream', 404, 'wait-healthy of an unknown upstream');
    $r = cli($t, $api, 'wait-healthy', 'app', 'nope');
    is($r->{rc}, 9, 'wait-healthy of an unknown pool: exit 9');
}

SKIP: {
    skip('needs health_check, not in this build yet', 1) unless $hc;

    $t->set_backend('green1', healthy => 0);
    my $r = cli($t, $api, 'wait-healthy', 'app', 'green', '--timeout', '1',
        '--interval', '0.2');
    is($r->{rc}, 10, 'a server failing its probes: exit 10 after '
        . '--timeout');
    like($r->{err}, qr/\Q127.0.0.1:${\ $t->port('green1')}\E is (down|checking)/,
        '... names it');

    $r = cli($t, $api, 'health', 'u_green');
    like($r->{out}, qr/\bdown\b.*503/, 'health shows it down with the 503');

    $r = cli($t, $api, 'flip', 'app', 'green');
    refused($r, 'pool_unavailable', 409, 'flip to a pool down by probes');

    $t->set_backend('green1', healthy => 1);
    $r = cli($t, $api, 'wait-healthy', 'app', 'green', '--timeout', '10',
        '--interval', '0.1');
    is($r->{rc}, 0, 'healthy again: wait-healthy exit 0') or diag($r->{err});
    is(cli($t, $api, 'flip', 'app', 'green')->{rc}, 0, 'now the flip works');
    ok(cli($t, $api, 'flip', 'app', 'blue')->{rc} == 0, 'back to blue');
}

###########################################################################
# health

{
    my $r = cli($t, $api, 'health');
    is($r->{rc}, 0, 'health: exit 0');
    for my $u (qw(u_blue u_green u_canary)) {
        like($r->{out}, qr/^$u: \d+\/\d+ servers live/m, "health: $u");
    }
    my $blue1 = '127.0.0.1:' . $t->port('blue1');
    like($r->{out}, qr/^\s+0\s+\Q$blue1\E\s+up\s/m, 'health: a server row');

    my $app = cli($t, $api, 'health', 'app');
    like($app->{out}, qr/^u_blue: .*^u_green: .*^u_canary: /ms,
        'health app: the servers of its pools');

    $r = cli($t, $api, 'health', 'u_blue', '--json');
    is_deeply($JSON->decode($r->{out}),
        $t->get('/traffic/health/u_blue', port => 'api')->{json},
        'health u_blue --json prints GET /health/u_blue');

    refused(cli($t, $api, 'health', 'nope'), 'unknown_upstream', 404,
        'health of an unknown upstream');
}

done_testing();
