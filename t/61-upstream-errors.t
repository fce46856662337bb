#!/usr/bin/perl

# Per-pool upstream errors and response times: counted once per upstream
# attempt from the upstream's side (5xx, connect errors, timeouts), so that
# error_page and proxy_intercept_errors do not hide them; response times in
# a histogram shared by the workers, exported to Prometheus.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSProm;

my $t = TSTest->new(workers => 2);
$t->backend('blue1');
$t->backend('canary1', status => 500, slow => 0.25);
$t->port('dead');

$t->write_config(<<'EOF');
http {
    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%; }
    upstream app_canary { server 127.0.0.1:%%PORT_canary1%%; }
    upstream app_dead   { server 127.0.0.1:%%PORT_dead%%;
                          server 127.0.0.1:%%PORT_dead%%; }

    traffic_shift app {
        pool blue   app_blue   weight=50;
        pool canary app_canary weight=50;
    }

    traffic_shift dead {
        pool only app_dead weight=100;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
        location /hidden {
            proxy_pass http://app;
            proxy_intercept_errors on;
            error_page 500 = @fine;
        }
        location /gone { proxy_pass http://dead;
                         error_page 502 = @fine; }
        location @fine { return 200 "fine\n"; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api; }
    }
}
EOF
$t->start;

sub metrics {
    my $r = $t->get('/traffic/metrics', port => 'api');
    my $m = TSProm::parse($r->{body});
    is_deeply($m->{errors}, [], 'the exposition parses');
    return $m;
}

sub v {
    my ($m, $name, %l) = @_;
    return TSProm::value($m, $name, %l) // 0;
}

my $m = metrics();
is(v($m, 'traffic_shift_upstream_errors_total', upstream => 'app',
     pool => 'canary'), 0, 'no errors at first');
is(v($m, 'traffic_shift_upstream_response_duration_seconds_count',
     upstream => 'app', pool => 'blue'), 0, 'no response times at first');

# 20 requests, about 10 to each pool (each worker alternates, and the two
# workers may not get 10 each); the canary's 500s are hidden from clients

my %status;
$status{$t->get('/hidden')->{status}}++ for 1 .. 20;
is_deeply(\%status, { 200 => 20 }, 'clients see no error');

$m = metrics();
my %n = map { $_ => v($m, 'traffic_shift_upstream_response_duration_seconds'
                          . '_count', upstream => 'app', pool => $_) }
        qw(blue canary);
is($n{blue} + $n{canary}, 20, 'a response time per request');
ok($n{blue} >= 8 && $n{blue} <= 12, "about half to blue ($n{blue})");
is(v($m, 'traffic_shift_upstream_errors_total', upstream => 'app',
     pool => 'canary'), $n{canary}, 'the canary 500s are counted');
is(v($m, 'traffic_shift_upstream_errors_total', upstream => 'app',
     pool => 'blue'), 0, 'blue has no error');
is(v($m, 'traffic_shift_upstream_response_duration_seconds_bucket',
     upstream => 'app', pool => 'blue', le => '+Inf'), $n{blue},
   'the +Inf bucket is the count');

# connect errors: two attempts, both refused, hidden by error_page

is($t->get('/gone')->{status}, 200, 'connect errors hidden from the client');

# the attempts are counted when the request ends, which may be just after
# its answer: another worker may answer the metrics first
$t->wait_for(sub {
    my $r = $t->get('/traffic/metrics', port => 'api', quiet => 1);
    return v(TSProm::parse($r->{body}), 'traffic_shift_upstream_errors_total',
             upstream => 'dead', pool => 'only') >= 2;
}, what => 'the attempts counted', timeout => 2);
$m = metrics();
is(v($m, 'traffic_shift_upstream_errors_total', upstream => 'dead',
     pool => 'only'), 2, 'two refused attempts: two errors');
is(v($m, 'traffic_shift_upstream_response_duration_seconds_count',
     upstream => 'dead', pool => 'only'), 2, 'two attempts timed');

# slow answers land in the 0.3s bucket, not below 0.2s

my $count = 'traffic_shift_upstream_response_duration_seconds_count';
my $c0 = v($m, $count, upstream => 'app', pool => 'canary');
$t->get('/slow') for 1 .. 4;
$m = metrics();
my $slow = v($m, $count, upstream => 'app', pool => 'canary') - $c0;
my $le02 = v($m, 'traffic_shift_upstream_response_duration_seconds_bucket',
             upstream => 'app', pool => 'canary', le => '0.200');
my $le03 = v($m, 'traffic_shift_upstream_response_duration_seconds_bucket',
             upstream => 'app', pool => 'canary', le => '0.300');
ok($slow >= 1, "slow canary answers ($slow of 4: each worker alternates)");
is($le03 - $le02, $slow, 'the slow canary answers between 0.2s and 0.3s');
ok(v($m, 'traffic_shift_upstream_response_duration_seconds_sum',
     upstream => 'app', pool => 'canary') >= 0.25 * $slow,
   'their time in the sum');

# buckets are cumulative and increasing

my @b = map { $_->{value} } grep { $_->{labels}{pool} eq 'canary' }
    TSProm::samples($m,
        'traffic_shift_upstream_response_duration_seconds_bucket');
is(scalar @b, 28, '28 buckets');
ok(!grep({ $b[$_] < $b[$_ - 1] } 1 .. $#b), 'buckets never decrease');

is(v($m, 'traffic_shift_rollout_step', upstream => 'app'), 0,
   'no rollout: step 0');
is(v($m, 'traffic_shift_rollout_state', upstream => 'app', state => 'none'),
   1, 'no rollout: state none');
is(v($m, 'traffic_shift_rollouts_total', upstream => 'app',
     result => 'rolled_back'), 0, 'no rollout ended');

$t->allow_log(qr/connect\(\) failed|no live upstreams/);

done_testing();
