#!/usr/bin/perl

# Passive outlier detection (outlier_detection): a server that answers its
# health URI with 200 but real requests with 500 is ejected after the
# configured count, and only it; the cap and the last-live-server rule
# hold; it comes back when its time is over, and at once after a passing
# probe; repeated ejections double up to the maximum; gateway failures and
# the failure ratio eject too; two workers share one state; an ejection in
# the canary pool of a rollout rolls it back; bad parameters are refused.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time);
use TSTest;

my $b = TSTest::Backends->new(backends => [
    'ok1', 'ok2', 'ok3',
    'bad1' => { status => 500 },
    'bad2' => { status => 500 },
    'bad3' => { status => 500 },
    'gw1', 'c1',
    'cbad' => { status => 500 },
]);
$b->start;

my $t = TSTest->new(workers => 2);

$t->write_config(<<'EOF');
http {
    upstream one {
        server 127.0.0.1:%%PORT_ok1%%;
        server 127.0.0.1:%%PORT_bad1%%;
        server 127.0.0.1:%%PORT_ok2%%;
        server 127.0.0.1:%%PORT_ok3%%;
        outlier_detection consecutive_5xx=3 ejection=1s max_ejection=3s
                          max_ejected=50%;
    }
    upstream cap {
        server 127.0.0.1:%%PORT_ok1%%;
        server 127.0.0.1:%%PORT_bad1%%;
        server 127.0.0.1:%%PORT_bad2%%;
        server 127.0.0.1:%%PORT_bad3%%;
        outlier_detection consecutive_5xx=2 ejection=60s max_ejected=50%;
    }
    upstream last {
        zone last 64k;
        server 127.0.0.1:%%PORT_bad1%%;
        server 127.0.0.1:%%PORT_bad2%%;
        outlier_detection consecutive_5xx=2 ejection=60s max_ejected=100%;
    }
    upstream probed {
        server 127.0.0.1:%%PORT_ok1%%;
        server 127.0.0.1:%%PORT_bad1%%;
        outlier_detection consecutive_5xx=2 ejection=60s slow_start=10s;
        health_check uri=/healthz interval=500ms fails=1 passes=1;
    }
    upstream gateway {
        server 127.0.0.1:%%PORT_ok1%%;
        server 127.0.0.1:%%PORT_gw1%%;
        outlier_detection consecutive_5xx=0 consecutive_gateway=2
                          ejection=60s;
    }
    upstream ratio {
        server 127.0.0.1:%%PORT_ok1%%;
        server 127.0.0.1:%%PORT_ratio%%;
        outlier_detection consecutive_5xx=0 consecutive_gateway=0
                          failure_ratio=0.3 min_requests=10 window=30s
                          ejection=60s;
    }
    upstream stable { server 127.0.0.1:%%PORT_ok2%%; }
    upstream canary {
        server 127.0.0.1:%%PORT_c1%%;
        server 127.0.0.1:%%PORT_cbad%%;
        outlier_detection consecutive_5xx=2 ejection=60s;
    }
    traffic_shift app { pool stable stable weight=100; pool canary canary; }

    # fails about half of its requests, at random
    server {
        listen 127.0.0.1:%%PORT_ratio%%;
        add_header X-Backend ratio always;
        location / {
            if ($request_id ~ "[0-7]$") { return 500 "ratio\n"; }
            return 200 "ratio\n";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /one/ { proxy_pass http://one/; }
        location /cap/ { proxy_pass http://cap/; }
        location /last/ { proxy_pass http://last/; }
        location /probed/ { proxy_pass http://probed/; }
        location /gateway/ { proxy_pass http://gateway/; }
        location /ratio/ { proxy_pass http://ratio/; }
        location /app/ { proxy_pass http://app/; }
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
$t->start;

sub addr { '127.0.0.1:' . $t->port($_[0]) }

sub health {
    my ($ups) = @_;
    my $r = $t->get("/traffic/health/$ups");
    return { map { $_->{address} => $_ } @{($r->{json} // {})->{servers}
                                           // []} };
}

sub server { health($_[0])->{addr($_[1])} // {} }

# requests to an upstream until "cond" holds, at most "max"
sub drive {
    my ($path, $cond, $max) = @_;
    for my $i (1 .. $max) {
        $t->get($path, quiet => 1);
        return $i if $cond->();
    }
    return 0;
}

# 1. one server fails real requests, answers its probes: it alone goes

my $n = drive('/one/', sub { server('one', 'bad1')->{outlier}{ejected} }, 60);
ok($n, "one: the failing server is ejected (after $n requests)");

my $s = server('one', 'bad1');
is($s->{state}, 'down', 'one: its state is down');
is($s->{down_reason}, 'outlier', 'one: down reason: outlier');
is($s->{outlier}{ejections}, 1, 'one: one ejection');
cmp_ok($s->{outlier}{ejected_for_ms}, '>=', 1000, 'one: ejected for 1s...');
cmp_ok($s->{outlier}{ejected_for_ms}, '<=', 1100, '... plus jitter (10%)');
is(server('one', $_)->{down_reason}, undef, "one: $_ is not down")
    for qw(ok1 ok2 ok3);
like($t->error_log, qr/\[warn\].*server \Q${\ addr('bad1')}\E in upstream "one" ejected for \d+ms after 3 consecutive 5xx responses/,
     'one: the ejection is logged at warn with its numbers');

my $c = $t->count_backends(n => 30, path => '/one/');
is($c->{bad1} // 0, 0, 'one: no request reaches it while ejected');
is($c->{_status_500} // 0, 0, 'one: no 500 while it is out');
is(($c->{ok1} // 0) + ($c->{ok2} // 0) + ($c->{ok3} // 0), 30,
   'one: the other servers take every request')
    or diag(explain($c));

# 2. back when the time is over; failing again, ejected for twice as long

my $t0 = time;
ok($t->wait_for(sub { !server('one', 'bad1')->{outlier}{ejected} },
                timeout => 5, what => 'end of the ejection'),
   'one: back when its ejection is over');
cmp_ok(time - $t0, '<=', 1.1 + 1, 'one: within its time and a tick');
like($t->error_log, qr/server \Q${\ addr('bad1')}\E in upstream "one" is back after its ejection/,
     'one: the return is logged');

for my $k (2, 3) {
    $n = drive('/one/',
               sub { (server('one', 'bad1')->{outlier}{ejections} // 0)
                     >= $k }, 60);
    ok($n, "one: ejected again ($k)");
    $s = server('one', 'bad1');
    my $want = $k == 2 ? 2000 : 3000;
    cmp_ok($s->{outlier}{ejected_for_ms}, '>=', $want,
           "one: ejection $k lasts ${want}ms...");
    cmp_ok($s->{outlier}{ejected_for_ms}, '<=', $want * 1.1,
           '... plus jitter' . ($k == 3 ? ' (the maximum, not 4s)' : ''));
    ok($t->wait_for(sub { !server('one', 'bad1')->{outlier}{ejected} },
                    timeout => 6, what => "end of ejection $k"),
       "one: back after ejection $k");
}

# 3. the cap: at most 50% of the servers; the others keep failing

drive('/cap/', sub {
    my $h = health('cap');
    2 == grep { $h->{addr($_)}{outlier}{ejected} } qw(bad1 bad2 bad3);
}, 80);
my %before = map { $_ => $b->backend_hits($_, qr{^/(?!healthz$)}) }
    qw(bad1 bad2 bad3);
$c = $t->count_backends(n => 40, path => '/cap/');
my %hits = map { $_ => $b->backend_hits($_, qr{^/(?!healthz$)})
                       - $before{$_} } qw(bad1 bad2 bad3);
my $h = health('cap');
is(scalar(grep { $h->{addr($_)}{outlier}{ejected} } qw(bad1 bad2 bad3)), 2,
   'cap: two of the three failing servers ejected, no more (50% of 4)');
ok(!$h->{addr('ok1')}{outlier}{ejected}, 'cap: the good server stays');
is(join(',', map { $hits{$_} } grep { $h->{addr($_)}{outlier}{ejected} }
               qw(bad1 bad2 bad3)), '0,0',
   'cap: no worker sends a request to an ejected server (2 workers)')
    or diag(explain(\%hits));
cmp_ok((map { $hits{$_} } grep { !$h->{addr($_)}{outlier}{ejected} }
            qw(bad1 bad2 bad3))[0] // 0, '>', 0,
       'cap: the failing server left in takes its share');
like($t->error_log,
     qr/\[info\].*in upstream "cap" not ejected after 2 consecutive 5xx responses: 2 of at most 2 servers ejected/,
     'cap: the refusal is logged with the numbers');

# 4. never the last live server (with a zone)

drive('/last/', sub {
    my $h = health('last');
    1 == grep { $h->{addr($_)}{outlier}{ejected} } qw(bad1 bad2);
}, 40);
$c = $t->count_backends(n => 20, path => '/last/');
$h = health('last');
is(scalar(grep { $h->{addr($_)}{outlier}{ejected} } qw(bad1 bad2)), 1,
   'last: one server ejected, the last live one stays')
    or diag(explain($h));
is($c->{_status_500}, 20, 'last: it still takes the requests (fail-open)');

# 5. a passing probe ends an ejection at once (60s here)

$n = drive('/probed/',
           sub { server('probed', 'bad1')->{outlier}{ejected} }, 40);
ok($n, 'probed: ejected');
ok($t->wait_for(sub { !server('probed', 'bad1')->{outlier}{ejected} },
                timeout => 3, what => 'a probe ends the ejection'),
   'probed: back after a passing probe, long before 60s');
like($t->error_log, qr/is back from its ejection: a health check passed/,
     'probed: logged');
ok(server('probed', 'bad1')->{slow_start}{ramping},
   'probed: back from an ejection, it ramps up (slow start)');

# 6. gateway failures: 503 from the server, then a refused connection

$b->set_backend('gw1', failing => 1);
$n = drive('/gateway/',
           sub { server('gateway', 'gw1')->{outlier}{ejected} }, 40);
ok($n, 'gateway: 503s eject it');
like($t->error_log, qr/in upstream "gateway" ejected for \d+ms after 2 consecutive gateway failures/,
     'gateway: the reason is gateway failures');
$b->set_backend('gw1', failing => 0);

# 7. the failure ratio over a window

$n = drive('/ratio/',
           sub { server('ratio', 'ratio')->{outlier}{ejected} }, 300);
ok($n, "ratio: a server failing half its requests is ejected ($n)");
like($t->error_log, qr/in upstream "ratio" ejected for \d+ms after \d+ failures in \d+ responses/,
     'ratio: logged with failures and responses');
ok(!server('ratio', 'ok1')->{outlier}{ejected}, 'ratio: the good one stays');

# 8. metrics

my $m = $t->get('/traffic/metrics')->{body} // '';
like($m, qr/^traffic_shift_server_ejections_total\{upstream="one",server="\Q${\ addr('bad1')}\E"\} 3$/m,
     'metrics: ejections counted');
like($m, qr/^traffic_shift_server_down\{upstream="cap",server="[^"]+",reason="outlier"\} 1$/m,
     'metrics: down by reason');

# 9. an ejection in the canary pool of a rollout rolls it back

my $r = $t->put('/traffic/upstreams/app/rollout', {
    pool => 'canary', baseline => ['stable'], steps => [50, 100],
    interval => '30s', min_requests => 1000,
    analysis => { max_error_ratio => 1 },
});
is($r->{status}, 201, 'rollout started') or diag(explain($r));
$n = drive('/app/', sub {
    ($t->get('/traffic/upstreams/app/rollout')->{json} // {})->{state}
        eq 'rolled_back' }, 80);
ok($n, 'rollout: rolled back');
$r = $t->get('/traffic/upstreams/app/rollout')->{json};
like($r->{reason} // '', qr/outlier ejection: server \S+ of pool "canary"/,
     'rollout: the reason names the ejection');
is_deeply($t->get('/traffic/upstreams/app')->{json}{weights},
          { stable => 100, canary => 0 }, 'rollout: weights restored');

$t->stop;

# 10. bad parameters: nginx -t fails with the file, the line and the value

my @bad = (
    'outlier_detection consecutive_5xx=x;' => qr/invalid parameter "consecutive_5xx=x"/,
    'outlier_detection failure_ratio=1.5;' => qr/invalid parameter "failure_ratio=1.5"/,
    'outlier_detection max_ejected=101%;' => qr/invalid parameter "max_ejected=101%"/,
    'outlier_detection ejection=5m max_ejection=1m;' => qr/"max_ejection" \(60000ms\) is shorter/,
    'outlier_detection window=5s;' => qr/need "failure_ratio"/,
    'outlier_detection ejection=0;' => qr/must not be 0/,
    'outlier_detection color=red;' => qr/invalid parameter "color=red"/,
    'outlier_detection; outlier_detection;' => qr/"outlier_detection" directive is duplicate/,
    'outlier_detection consecutive_5xx=0 consecutive_gateway=0;' => qr/nothing to do/,
    'hash $uri; outlier_detection slow_start=10s;' => qr/"slow_start" cannot be used in upstream "u".*in \S+:\d+/,
);

my $x = TSTest->new(name => 'outlier-bad');
while (my ($line, $re) = splice(@bad, 0, 2)) {
    my ($rc, $out) = $x->nginx_t(<<"EOF");
http {
    upstream u {
        server 127.0.0.1:1;
        server 127.0.0.1:2;
        $line
    }
    server { listen 127.0.0.1:%%PORT_main%%; location / { proxy_pass http://u; } }
}
EOF
    isnt($rc, 0, "nginx -t refuses: $line");
    like($out, $re, "... and says why: $line");
    like($out, qr/\[emerg\].*nginx\.conf:\d+/, '... with the file and line');
}

done_testing();
