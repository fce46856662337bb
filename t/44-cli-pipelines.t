#!/usr/bin/perl

# scripts/traffic-shift in pipelines: every error as a JSON object on
# stderr under --json, with the exit code of its kind (2 usage, 3
# unreachable, 6 refused, 7 denied, 8 bad request, 9 not found, 10
# timeout); --retry on 503 with its backoff (412: t/41-cli.t); status --watch; and the main
# commands with only BusyBox's tools on PATH (no GNU-only option).

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSCli qw(cli run_capture missing_features $CLI);
use JSON::PP ();

my $JSON = JSON::PP->new;

my $t = TSTest->new(workers => 1);
$t->backend($_) for qw(blue1 green1);
$t->backend('slow1', delay => 5);
$t->port('api');

my $missing = missing_features($t);
plan(skip_all => 'needs the admin API (traffic_shift_api)')
    if $missing->{traffic_shift_api};

$t->write_config(<<'EOF');
http {
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    upstream u_none  { server 127.0.0.1:%%PORT_none%% down; }

    traffic_shift app {
        pool blue  u_blue  weight=100;
        pool green u_green;
        pool none  u_none;
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
        location /ro/      { traffic_shift_api; }
        location /busy/ {
            default_type application/json;
            return 503 '{"error":{"code":"reloading","text":"busy"}}';
        }
    }
}
EOF
$t->start;

my $base = 'http://127.0.0.1:' . $t->port('api');
my $api = "$base/traffic/";
my $dead = 'http://127.0.0.1:' . $t->port('closed') . '/traffic/';
my $slow = 'http://127.0.0.1:' . $t->port('slow1') . '/';

# the JSON error objects of stderr (one a line; retry notices too)
sub errors {
    my ($r) = @_;
    return [map { eval { $JSON->decode($_) } // { bad => $_ } }
            grep { /\S/ } split /\n/, $r->{err}];
}

###########################################################################
# --json: each error a JSON object, the exit code of its kind

for my $c (
    [[$dead, 'status'], 3, 'unreachable', undef, 'unreachable API'],
    [[$slow, 'status', '--max-time', '0.5'], 10, 'timeout', undef,
     'an API slower than --max-time'],
    [[$api, 'status', '--frob'], 2, 'usage', undef, 'unknown option'],
    [[$api, 'frob'], 2, 'usage', undef, 'unknown command'],
    [[$api, 'status', 'nope'], 9, 'unknown_upstream', 404,
     'unknown upstream'],
    [[$api, 'set', 'app', 'blue=90', 'green=5'], 8, 'invalid_total', 400,
     'weights not totalling 100'],
    [[$api, 'flip', 'app', 'none'], 6, 'pool_unavailable', 409,
     'a pool without live server'],
    [[$api, 'set', 'app', 'blue=100', '--if-match', '999'], 6,
     'precondition_failed', 412, 'a stale --if-match'],
    [["$base/ro/", 'flip', 'app', 'green'], 7, 'read_only', 403,
     'a read-only location'],
    [[$api, 'canary', 'app', 'nope', '5'], 9, 'not_found', undef,
     'canary to an unknown pool'],
    [[$api, 'canary', 'app', 'green', '5'], 0, undef, undef,
     'canary: done'],
    [[$api, 'canary', 'app', 'none', '200'], 2, 'usage', undef,
     'canary of 200%'],
    [[$api, 'wait-healthy', 'u_none', '--timeout', '0.3'], 0, undef, undef,
     'wait-healthy of servers down in the configuration'],
) {
    my ($args, $rc, $code, $status, $name) = @$c;
    my ($url, @rest) = @$args;
    my $r = cli($t, $url, '--json', @rest);
    is($r->{rc}, $rc, "--json, $name: exit $rc") or diag($r->{err});
    next unless defined $code;
    my $e = errors($r);
    is(scalar @$e, 1, "--json, $name: one line on stderr")
        or diag($r->{err});
    my $err = $e->[-1]{error} // {};
    is($err->{code}, $code, "--json, $name: code $code");
    is($err->{exit}, $rc, "--json, $name: exit $rc in the object");
    is($err->{status}, $status, "--json, $name: status "
        . ($status // 'none'));
    ok(length($err->{text} // '') > 0, "--json, $name: a text");
    is($r->{out}, '', "--json, $name: nothing on stdout");
}

# without --json: the same codes, text
{
    my $r = cli($t, $api, 'status', 'nope');
    is($r->{rc}, 9, 'unknown upstream: exit 9');
    like($r->{err}, qr/^traffic-shift: .*\(unknown_upstream, HTTP 404\)$/m,
        '... in words');
}

###########################################################################
# --retry: a 503 is tried again after 1, 2, 4 ... times the first delay

{
    my $r = cli($t, "$base/busy/", { TRAFFIC_SHIFT_RETRY_DELAY => '0.2' },
        'set', 'app', 'blue=100', '--retry', '2');
    is($r->{rc}, 1, '503 after --retry 2: exit 1');
    my @retries = $r->{err} =~ /^traffic-shift: retry (\d) of 2 in ([\d.]+)s$/mg;
    is("@retries", '1 0.2 2 0.4', 'two retries, after 0.2s and 0.4s');
    my @busy = $r->{err} =~ /\(reloading, HTTP 503\)/g;
    is(scalar @busy, 3, 'three attempts');
    ok($r->{secs} >= 0.6, sprintf('... in %.1fs', $r->{secs}));

    $r = cli($t, "$base/busy/", { TRAFFIC_SHIFT_RETRY_DELAY => '0.1' },
        '--json', 'flip', 'app', 'green', '--retry', '1');
    is($r->{rc}, 1, '--json, 503 after --retry 1: exit 1');
    my $e = errors($r);
    is_deeply([map { $_->{error} ? 'error' : $_->{retry} ? 'retry' : '?' }
               @$e], [qw(error retry error)], '--json: the retry as JSON');
    is($e->[1]{retry}{delay_ms}, 100, '... with its delay');

    $r = cli($t, "$base/busy/", { TRAFFIC_SHIFT_RETRY_DELAY => '0.05' },
        'status', 'app', '--retry', '1');
    is($r->{rc}, 1, 'a read answered 503: retried too, then exit 1');
    like($r->{err}, qr/retry 1 of 1/, '... once');

    $r = cli($t, $api, 'status', '--retry', 'x');
    is($r->{rc}, 2, 'an invalid --retry: exit 2');
    $r = cli($t, $api, { TRAFFIC_SHIFT_RETRY_DELAY => '0.1' },
        'set', 'app', 'blue=90', 'green=5', '--retry', '3');
    is($r->{rc}, 8, 'a 400 is not retried: exit 8');
    unlike($r->{err}, qr/retry/, '... at once');
}

###########################################################################
# status --watch

{
    my $r = cli($t, $api, 'status', 'app', '--watch', '--json',
        '--interval', '0.2', '--timeout', '1');
    is($r->{rc}, 0, 'status --watch --json --timeout 1: exit 0');
    my @docs = map { eval { $JSON->decode($_) } } split /\n/, $r->{out};
    ok(@docs >= 2, scalar(@docs) . ' documents, one a line');
    is(scalar(grep { ($_->{name} // '') eq 'app' } @docs), scalar @docs,
        '... each the upstream');

    $r = cli($t, $api, 'status', '--watch', '--interval', '0.2',
        '--timeout', '0.5');
    is($r->{rc}, 0, 'status --watch: exit 0');
    like($r->{out}, qr/^# \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\napp: generation/m,
        '... a time line, then the table');

    $r = cli($t, $dead, 'status', '--watch', '--interval', '0.2',
        '--timeout', '0.5');
    is($r->{rc}, 0, 'status --watch of an unreachable API goes on');
    like($r->{err}, qr/cannot reach the API/, '... saying so');

    $r = cli($t, $api, 'health', '--watch');
    is($r->{rc}, 2, '--watch with health: exit 2');
}

###########################################################################
# BusyBox's tools only: bash, and on PATH BusyBox's applets, curl and jq

SKIP: {
    my $bb = (grep { -x "$_/busybox" } qw(/usr/bin /bin /usr/sbin))[0];
    my ($curl) = grep { -x } map { "$_/curl" } split /:/, $ENV{PATH};
    my ($jq) = grep { -x } map { "$_/jq" } split /:/, $ENV{PATH};
    skip('busybox is not installed', 12) unless $bb && $curl && $jq;

    my $bin = $t->testdir . '/busybox-bin';
    mkdir $bin or die "$bin: $!";
    my $list = run_capture({ dir => $t->testdir }, "$bb/busybox", '--list');
    for my $applet (split /\n/, $list->{out}) {
        next if $applet =~ m{/} || $applet eq 'busybox';
        symlink("$bb/busybox", "$bin/$applet") or die "$bin/$applet: $!";
    }
    symlink($curl, "$bin/curl") or die;
    symlink($jq, "$bin/jq") or die;

    my $bash = (grep { -x } qw(/bin/bash /usr/bin/bash))[0];
    my $sh = sub {
        my $r = run_capture({ dir => $t->testdir,
                              env => { PATH => $bin,
                                       TRAFFIC_SHIFT_API => $api } },
                            $bash, $CLI, @_);
        note("busybox: traffic-shift @_: exit $r->{rc}\n$r->{err}");
        return $r;
    };

    my $r = $sh->('status', 'app');
    is($r->{rc}, 0, 'busybox: status');
    like($r->{out}, qr/^\s+blue\s+95\s+u_blue/m, 'busybox: the table');
    is($sh->('set', 'app', 'blue=80', 'green=20')->{rc}, 0, 'busybox: set');
    is($sh->('canary', 'app', 'green', '30', '--to')->{rc}, 0,
        'busybox: canary --to');
    is($t->get('/traffic/upstreams/app', port => 'api')->{json}{weights}
       {green}, 30, 'busybox: green has 30%');
    is($sh->('flip', 'app', 'blue')->{rc}, 0, 'busybox: flip');
    is($sh->('health', 'u_blue')->{rc}, 0, 'busybox: health');
    is($sh->('wait-healthy', 'app', 'blue', '--timeout', '2')->{rc}, 0,
        'busybox: wait-healthy');
    $r = $sh->('wait-healthy', 'app', 'none', '--timeout', '1',
        '--interval', '0.2');
    ok($r->{rc} == 0 || $r->{rc} == 10, "busybox: wait-healthy of a pool"
        . " down in the configuration: exit $r->{rc}");
    $r = $sh->('--json', 'status', 'nope');
    is($r->{rc}, 9, 'busybox: --json error, exit 9');
    like($r->{err}, qr/^\{"error":\{"code":"unknown_upstream"/,
        'busybox: the JSON error');
    $r = $sh->('status', 'app', '--watch', '--interval', '0.3',
        '--timeout', '0.5');
    is($r->{rc}, 0, 'busybox: status --watch');
}

$t->stop;

done_testing();
