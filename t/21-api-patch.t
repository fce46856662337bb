#!/usr/bin/perl

# Admin API, changes: blue/green flips and canary steps, generation and
# ETag, If-Match (also two writers racing), admin-down of servers and the
# 409 rule for pools without a live server, the notice log line.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Select;
use IO::Socket::INET;
use JSON::PP ();
use TSTest;

my $t = TSTest->new(workers => 1);
$t->backend($_) for qw(blue1 blue2 green1 green2 canary1);

$t->write_config(<<'EOF');
http {
    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%;
                          server 127.0.0.1:%%PORT_blue2%%; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%;
                          server 127.0.0.1:%%PORT_green2%%; }
    upstream app_canary { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app {
        pool blue   app_blue   weight=100;
        pool green  app_green;
        pool canary app_canary;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        add_header X-Pool $traffic_shift_pool always;
        location / { proxy_pass http://app; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
$t->start;

sub api { my ($m, $p, %o) = @_; $t->http($m, $p, port => 'api', %o) }
sub patch { my ($p, $j, %o) = @_; api('PATCH', "/traffic$p", json => $j, %o) }
sub state { api('GET', '/traffic/upstreams/app')->{json} }

# requests per pool, checking that each answer came from the pool named
sub pools {
    my ($n) = @_;
    my %pool;
    for (1 .. $n) {
        my $r = $t->get('/', quiet => 1);
        my $p = $r->{headers}{'x-pool'} // 'none';
        $p = 'mismatch' unless ($r->{headers}{'x-backend'} // '')
            =~ /^\Q$p\E\d$/;
        $p = "status $r->{status}" if $r->{status} != 200;
        $pool{$p}++;
    }
    return \%pool;
}

is_deeply(pools(20), { blue => 20 }, 'at start: all to blue');

# blue/green flip

my $mark = $t->log_mark;
my $r = patch('/upstreams/app', { active => 'green' });
is($r->{status}, 200, 'flip to green: 200');
is($r->{headers}{etag}, '"2"', 'flip: ETag is the new generation');
is($r->{json}{generation}, 2, 'flip: generation 2');
is_deeply($r->{json}{weights}, { blue => 0, green => 100, canary => 0 },
    'flip: the answer has the new weights');
is($r->{json}{source}, 'api', 'flip: source api');
ok(!exists $r->{json}{persisted}, 'no state file: no "persisted"');
is_deeply(state(), { %{$r->{json}} }, 'GET after the flip: the same state');
is_deeply(pools(20), { green => 20 }, 'flip: all to green');
like($t->error_log(since => $mark),
    qr/\[notice\] .*traffic_shift "app": weights blue=100 green=0 canary=0 -> blue=0 green=100 canary=0 by client 127\.0\.0\.1, generation 2/,
    'flip: logged at notice with old and new weights, client, generation');

# roll back, then canary steps: 5%, 25%, 50% by weights, exact per worker

$r = patch('/upstreams/app', { active => 'blue' });
is($r->{json}{generation}, 3, 'roll back: generation 3');
is_deeply(pools(10), { blue => 10 }, 'roll back: all to blue');

my $gen = 3;
for my $step ([95, 5], [75, 25], [50, 50], [12.5, 87.5]) {
    my ($b, $c) = @$step;
    $r = patch('/upstreams/app', { weights => { blue => $b, canary => $c } });
    is($r->{status}, 200, "canary $c%: 200");
    is($r->{json}{generation}, ++$gen, "canary $c%: generation +1");
    is_deeply(state()->{weights}, { blue => $b, green => 0, canary => $c },
        "canary $c%: GET shows it; pools not named are 0");
    is_deeply(pools(200), { blue => $b * 2, canary => $c * 2 },
        "canary $c%: exactly $b/$c over 200 requests");
}

$r = patch('/upstreams/app',
           { weights => { blue => 33.33, green => 33.33, canary => 33.34 } });
like($r->{body}, qr/"weights":\{"blue":33\.33,"green":33\.33,"canary":33\.34\}/,
    'two decimals kept');
$r = patch('/upstreams/app', { weights => { green => 1e2 } });
is_deeply($r->{json}{weights}, { blue => 0, green => 100, canary => 0 },
    '1e2 is 100');
$r = patch('/upstreams/app', { weights => { blue => 10.00, green => 90.0 } });
is($r->{status}, 200, 'trailing zero decimals are fine');
$gen += 3;
is($r->{json}{generation}, $gen, 'one generation per accepted change');

# identical weights are still an accepted change

$r = patch('/upstreams/app', { weights => { blue => 10, green => 90 } });
is($r->{json}{generation}, ++$gen, 'same weights again: generation +1');

# content type with parameters

$r = api('PATCH', '/traffic/upstreams/app',
         body => '{"active":"blue"}',
         headers => { 'Content-Type' => 'Application/JSON; charset=utf-8' });
is($r->{status}, 200, 'content type with a parameter, any case');
$gen++;

# If-Match

for my $form ('"%d"', '%d', ' "%d" ', '*') {
    (my $im = $form) =~ s/%d/$gen/;
    $r = patch('/upstreams/app', { active => 'green' },
               headers => { 'If-Match' => $im });
    is($r->{status}, 200, "If-Match '$im' (current): 200");
    $gen = $r->{json}{generation};
}

my $before = state();
for my $im ('"1"', '1', '"' . ($gen + 1) . '"', 'W/"' . $gen . '"', '"x"',
            '"0"')
{
    $r = patch('/upstreams/app', { active => 'blue' },
               headers => { 'If-Match' => $im });
    is($r->{status}, 412, "If-Match '$im': 412");
    is($r->{json}{error}{code}, 'precondition_failed', "If-Match '$im': code");
    is($r->{headers}{etag}, "\"$gen\"", "If-Match '$im': current ETag");
}
is_deeply(state(), $before, 'stale If-Match: nothing changed');

# two writers with the same If-Match: one wins, the other gets 412

my $body = '{"active":"canary"}';
for my $round (1 .. 10) {
    $gen = state()->{generation};
    my $req = "PATCH /traffic/upstreams/app HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/json\r\nIf-Match: \"$gen\"\r\n"
        . "Content-Length: " . length($body) . "\r\nConnection: close\r\n"
        . "\r\n";
    my @s = map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $t->port('api'), Proto => 'tcp')
            or die "connect: $!";
    } 1, 2;
    # headers first on both, then both bodies: the changes race
    syswrite($_, $req) for @s;
    syswrite($_, $body) for @s;
    my @status = sort map {
        my $sock = $_;
        my $resp = '';
        my $sel = IO::Select->new($sock);
        while ($sel->can_read(10)) {
            last unless sysread($sock, $resp, 65536, length $resp);
        }
        ($resp =~ m{^HTTP/1\.1 (\d+)})[0] // 0;
    } @s;
    is_deeply(\@status, [200, 412], "race $round: one 200, one 412");
    is(state()->{generation}, $gen + 1, "race $round: generation +1");
    patch('/upstreams/app', { active => 'blue' });
}

# admin-down: a drained server gets no traffic

$r = patch('/health/app_blue/servers/0', { down => JSON::PP::true });
is($r->{status}, 200, 'admin-down blue1: 200');
is($r->{json}{state}, 'admin_down', 'admin-down: state');
ok($r->{json}{admin_down}, 'admin-down: flag');
like($r->{headers}{etag}, qr/^"\d+"$/, 'admin-down: ETag (zone version)');
my $version = api('GET', '/traffic/')->{json}{version};
is($r->{headers}{etag}, "\"$version\"", 'admin-down: ETag is the version');

my $hits = $t->count_backends(n => 20);
is_deeply($hits, { blue2 => 20 }, 'blue1 drained: all to blue2');
is(state()->{pools}{blue}{healthy}, 1, 'pool blue: 1 healthy server');

$r = patch('/health/app_blue/servers/127.0.0.1:' . $t->port('blue1'),
           { down => JSON::PP::false });
is($r->{json}{state}, 'up', 'back by address: up');
$hits = $t->count_backends(n => 20);
is_deeply($hits, { blue1 => 10, blue2 => 10 }, 'blue1 back in rotation');

# If-Match on a server change compares the zone version

$version = api('GET', '/traffic/')->{json}{version};
$r = patch('/health/app_blue/servers/0', { down => JSON::PP::true },
           headers => { 'If-Match' => '"' . ($version - 1) . '"' });
is($r->{status}, 412, 'server change, stale version: 412');
ok(!api('GET', '/traffic/health/app_blue/servers/0')->{json}{admin_down},
    'stale version: nothing changed');
$r = patch('/health/app_blue/servers/0', { down => JSON::PP::false },
           headers => { 'If-Match' => "\"$version\"" });
is($r->{status}, 200, 'server change, current version: 200');

# the 409 rule: a pool without a live server cannot get traffic

$mark = $t->log_mark;
for my $i (0, 1) {
    $r = patch("/health/app_green/servers/$i", { down => JSON::PP::true });
    is($r->{status}, 200, "admin-down green server $i");
}
like($t->error_log(since => $mark),
    qr/\[notice\] .*traffic_shift: server "127\.0\.0\.1:\d+" of upstream "app_green" set admin-down by client 127\.0\.0\.1/,
    'admin-down logged at notice');

$before = state();
is($before->{pools}{green}{healthy}, 0, 'green: no healthy server');

$r = patch('/upstreams/app', { active => 'green' });
is($r->{status}, 409, 'flip to a dead pool: 409');
is($r->{json}{error}{code}, 'pool_unavailable', '409: code');
like($r->{json}{error}{text}, qr/"green"/, '409: names the pool');
$r = patch('/upstreams/app', { weights => { blue => 99, green => 1 } });
is($r->{status}, 409, '1% to a dead pool: 409');
is_deeply(state(), $before, '409: nothing changed');

$r = patch('/upstreams/app', { weights => { blue => 100, green => 0 } });
is($r->{status}, 200, 'weight 0 for the dead pool: fine');

$r = patch('/upstreams/app', { active => 'green', force => JSON::PP::true });
is($r->{status}, 200, 'flip to a dead pool with force: 200');
is($r->{json}{weights}{green}, 100, 'force: green has 100');
# fail open: a pool with no live server still serves by weight
is_deeply(pools(10), { green => 10 }, 'force: traffic fails open to green');
$t->allow_log(qr/no live server|no weighted pool has a live server/);

$r = patch('/upstreams/app', { active => 'blue', force => JSON::PP::false });
is($r->{status}, 200, 'force false is allowed');

for my $i (0, 1) {
    patch("/health/app_green/servers/$i", { down => JSON::PP::false });
}
is(state()->{pools}{green}{healthy}, 2, 'green servers back');
$r = patch('/upstreams/app', { active => 'green' });
is($r->{status}, 200, 'flip to green once it is live: 200');

# the same server drained twice is one change of state

$version = api('GET', '/traffic/')->{json}{version};
patch('/health/app_canary/servers/0', { down => JSON::PP::false });
is(api('GET', '/traffic/')->{json}{version}, $version,
    'no change of mark: version unchanged');

done_testing();
