#!/usr/bin/perl

# Tests of the test harness itself (t/lib/TSTest.pm): ports, backends,
# the HTTP client, reload, a second backend nginx, counting, and the
# failure paths (cleanup on die, end-of-test log check).

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time);
use TSTest;

my $t = TSTest->new(workers => 2);

# ports: stable per name, distinct, shared by every instance

my $p1 = $t->port('one');
is($t->port('one'), $p1, 'same name, same port');
isnt($t->port('two'), $p1, 'other name, other port');
ok($p1 > 1024 && $p1 < 65536, 'port in range');

# backends in the same nginx, with options

$t->backend('blue1');
$t->backend('blue2');
$t->backend('red', status => 503, health => 500);
$t->backend('slowpoke', delay => 0.3, slow => 0.2);

my $conf = <<'EOF';
http {
    upstream blue {
        server 127.0.0.1:%%PORT_blue1%%;
        server 127.0.0.1:%%PORT_blue2%%;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://blue; }
        location = /version { return 200 "VERSION\n"; }
        location = /json {
            default_type application/json;
            return 200 '{"a":[1,2],"b":"x"}';
        }
        location = /show {
            return 200 "$request_method $http_content_type $content_length $http_x_test $host\n";
        }
        location = /conn { return 200 "$connection"; }
        location = /chunked { ssi on; ssi_types *; return 200 "chunks\n"; }
    }
}
EOF
(my $v1 = $conf) =~ s/VERSION/v1/;
$t->write_config($v1);
$t->start;

my $r = $t->get('/', port => 'blue1');
is($r->{status}, 200, 'backend: 200');
is($r->{body}, "blue1\n", 'backend: body is its name');
is($r->{headers}{'x-backend'}, 'blue1', 'backend: X-Backend header');
is($t->get('/healthz', port => 'blue1')->{body}, "ok\n", 'backend: healthz');

$r = $t->get('/', port => 'red');
is($r->{status}, 503, 'backend status option');
is($r->{headers}{'x-backend'}, 'red', 'X-Backend on error status');
is($t->get('/healthz', port => 'red')->{status}, 500, 'backend health option');

my $t0 = time;
$r = $t->get('/anything', port => 'slowpoke');
my $took = time - $t0;
is($r->{body}, "slowpoke\n", 'delayed backend answers');
ok($took >= 0.29 && $took < 3, "delay honoured (${took}s)");
$t0 = time;
$r = $t->get('/slow', port => 'slowpoke');
$took = time - $t0;
ok($r->{status} == 200 && $took >= 0.19 && $took < 3, "/slow (${took}s)");
$t->allow_log(qr/upstream timed out/);

$t->set_backend('blue2', healthy => 0);
is($t->get('/healthz', port => 'blue2')->{status}, 503, 'set unhealthy');
$t->set_backend('blue2', healthy => 1, failing => 1);
is($t->get('/healthz', port => 'blue2')->{status}, 200, 'set healthy');
is($t->get('/', port => 'blue2')->{status}, 503, 'set failing');
$t->set_backend('blue2', failing => 0);
is($t->get('/', port => 'blue2')->{status}, 200, 'set not failing');

ok($t->backend_hits('blue1', qr{^/healthz$}) == 1, 'backend access log');

# HTTP client

$r = $t->get('/json');
is_deeply($r->{json}, { a => [1, 2], b => 'x' }, 'JSON response decoded');
$r = $t->patch('/show', { weights => { blue => 100 } },
    headers => { 'X-Test' => 'yes' });
is($r->{body}, "PATCH application/json 24 yes localhost\n",
    'PATCH with a JSON body and headers');
$r = $t->http('POST', '/show', body => 'abc', host => 'example.com',
    headers => { 'Content-Type' => 'text/plain' });
is($r->{body}, "POST text/plain 3  example.com\n", 'raw body, host');
$r = $t->get('/chunked');
is($r->{headers}{'transfer-encoding'}, 'chunked', 'chunked response');
is($r->{body}, "chunks\n", 'chunked body decoded');
is($t->head('/json')->{body}, '', 'HEAD has no body');

my @c = map { $t->get('/conn', keepalive => 1)->{body} } 1 .. 3;
ok($c[0] eq $c[1] && $c[1] eq $c[2], 'keepalive reuses the connection');
@c = map { $t->get('/conn')->{body} } 1 .. 2;
isnt($c[0], $c[1], 'new connection per request by default');

$r = $t->http_raw("GET /version HTTP/1.0\r\n\r\n");
is($r->{body}, "v1\n", 'raw request');
like($r->{raw}, qr{^HTTP/1\.1 200}, 'raw response kept');

$r = $t->get('/', port => $t->port('unused'));
is($r->{status}, 599, 'connection refused: status 599');
like($r->{error}, qr/connect/, 'connection refused: error');

# wait_for is bounded

ok($t->wait_for(sub { 1 }), 'wait_for: true at once');
$t0 = time;
ok(!$t->wait_for(sub { 0 }, timeout => 0.2, quiet => 1), 'wait_for: false');
ok(time - $t0 < 1, 'wait_for: bounded');

# 1000 requests are fast

$t0 = time;
my $count = $t->count_backends(n => 1000);
$took = time - $t0;
is($count->{blue1} + $count->{blue2}, 1000, '1000 proxied requests');
ok($took < 5, "1000 requests in ${took}s");

# reload: waits until the new generation of workers serves

for my $v (qw(v2 v3 v4)) {
    my @old = $t->worker_pids;
    (my $c = $conf) =~ s/VERSION/$v/;
    ok($t->reload($c), "reload to $v");
    my @new = $t->worker_pids;
    is(scalar @new, 2, 'two new workers');
    ok(!grep({ my $o = $_; grep { $_ == $o } @new } @old),
        'old workers replaced');
    ok(!grep({ kill 0, $_ } @old), 'old workers exited');
    my %seen = map { $t->get('/version')->{body} => 1 } 1 .. 20;
    is_deeply([keys %seen], ["$v\n"], "every request sees $v");
}

# a broken configuration is refused quickly, the old one keeps serving

my $mark = $t->log_mark;
$t0 = time;
ok(!$t->reload("http {\n    broken_directive;\n}\n", quiet => 1),
    "bad reload fails");
ok(time - $t0 < 5, 'bad reload detected quickly');
like($t->error_log(since => $mark), qr/\[emerg\].*broken_directive/,
    'error_log(since)');
$t->allow_log(qr/broken_directive/);
is($t->get('/version')->{body}, "v4\n", 'old configuration still serves');
$t->write_config($v1);    # so that later reloads start from a good one

# a second nginx with named backends, stopped and started

my $b = TSTest::Backends->new(backends => ['green1', 'green2',
                                           'green3' => { status => 404 }]);
$b->start;
is($b->get('/', port => 'green1')->{body}, "green1\n", 'backends: green1');
is($b->get('/', port => 'green3')->{status}, 404, 'backends: options');
ok($t->port('green2') == $b->port('green2'), 'ports shared by name');

ok($b->stop_backend('green1'), 'stop one backend');
is($b->get('/', port => 'green1')->{status}, 599, 'stopped backend refuses');
is($b->get('/', port => 'green2')->{body}, "green2\n", 'others still serve');
ok($b->start_backend('green1'), 'start it again');
is($b->get('/', port => 'green1')->{body}, "green1\n", 'it serves again');

$b->stop;
is($b->get('/', port => 'green2')->{status}, 599, 'instance stopped');
$b->start;
is($b->get('/', port => 'green2')->{body}, "green2\n", 'instance started');
ok($b->backend_hits('green2') >= 2, 'per-backend access log survives');

# exact round robin with one worker: 50/50 over 100 requests

my $rr = TSTest->new(workers => 1, name => 'rr');
$rr->write_config(<<'EOF');
http {
    upstream greens {
        server 127.0.0.1:%%PORT_green1%%;
        server 127.0.0.1:%%PORT_green2%%;
    }
    server {
        listen 127.0.0.1:%%PORT_rr%%;
        location / { proxy_pass http://greens; }
    }
}
EOF
$rr->start;
is_deeply($rr->count_backends(n => 100, port => 'rr'),
    { green1 => 50, green2 => 50 }, 'count_backends: exactly 50/50');
my $i = 0;
is_deeply($rr->count_backends(n => 10, port => 'rr',
        headers => sub { { 'X-N' => $_[0] } }),
    { green1 => 5, green2 => 5 }, 'count_backends with per-request headers');

$b->stop_backend('green2');
my $got = $rr->count_backends(n => 10, port => 'rr');
is($got->{green1}, 10, 'a stopped backend gets no requests');
$rr->allow_log(qr/Connection refused|no live upstreams/);

# failure paths: a test that dies, a test with an [emerg] in its log

my $script = <<'EOF';
use strict;
use warnings;
use Test::More;
use TSTest;
my $t = TSTest->new;
$t->write_config("http { server { listen 127.0.0.1:%%PORT_main%%; } }\n");
$t->start;
print "PID ", $t->master_pid, "\n";
print "DIR ", $t->testdir, "\n";
if ($ARGV[0] eq 'die') {
    ok(1, 'something');
    die "boom\n";
} elsif ($ARGV[0] eq 'crash') {
    my @w = $t->worker_pids;
    print "WORKERS @w\n";
    kill 'KILL', $t->master_pid;
    $t->wait_for(sub { !$t->is_running });
} else {
    $t->reload("http { oops; }\n");
}
done_testing();
EOF
$t->write_file('child.t', $script);
my $child = $t->testdir . '/child.t';
for my $mode (qw(die emerg crash)) {
    my $out = `$^X -I$FindBin::Bin/lib $child $mode 2>&1`;
    my $status = $? >> 8;
    my ($pid) = $out =~ /^PID (\d+)/m;
    my ($dir) = $out =~ /^DIR (\S+)/m;
    ok($pid && $dir, "$mode: child test started nginx") or diag($out);
    isnt($status, 0, "$mode: child test failed");
    ok($pid && !kill(0, $pid), "$mode: nginx stopped");
    like($out, qr/test directory kept: \Q$dir\E/, "$mode: directory kept");
    if ($mode eq 'emerg') {
        like($out, qr/not ok \d+ - main: no alert, crit, emerg/,
            'emerg: log check failed');
        like($out, qr/\[emerg\].*oops/, 'emerg: offending line shown');
    }
    if ($mode eq 'crash') {
        like($out, qr/nginx exited on its own/, 'crash: reported');
        my ($w) = $out =~ /^WORKERS (.+)$/m;
        # killed workers are reaped by init, a moment later
        ok($w && $t->wait_for(sub { !grep { kill 0, $_ } split ' ', $w },
            timeout => 5, what => 'workers gone'), 'crash: workers killed');
    }
    system('rm', '-rf', $dir) if $dir && $dir =~ /ts-main-/;
}

done_testing();
