#!/usr/bin/perl

# GET /metrics: valid Prometheus text exposition, with HELP and TYPE for
# every family, escaped label values, and counters that match the requests
# the test sent.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use TSTest;
use TSProm;

my $t = TSTest->new(workers => 2);
$t->backend('blue1');
$t->backend('green1', status => 404);
$t->backend('canary1', status => 503);

$t->write_config(<<'EOF');
http {
    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%;
                          server 127.0.0.1:%%PORT_spare%% down; }
    upstream app_canary { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app {
        pool blue   app_blue   weight=50;
        pool green  app_green  weight=30;
        pool canary app_canary weight=20;
    }

    traffic_shift 'we"ird\\name' {
        pool only app_blue weight=100;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
        location /weird/ { proxy_pass http://we"ird\\name; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api; }
        location /rw/ { traffic_shift_api write=on; }
    }
}
EOF
$t->start;

sub metrics {
    my $r = $t->get('/traffic/metrics', port => 'api');
    is($r->{status}, 200, 'GET /metrics: 200');
    is($r->{headers}{'content-type'},
        'text/plain; version=0.0.4; charset=utf-8', 'exposition content type');
    my $m = TSProm::parse($r->{body});
    is_deeply($m->{errors}, [], 'the exposition parses');
    return $m;
}

my $m = metrics();

my %families = (
    traffic_shift_weight => 'gauge',
    traffic_shift_requests_total => 'counter',
    traffic_shift_responses_total => 'counter',
    traffic_shift_generation => 'gauge',
    traffic_shift_server_up => 'gauge',
    traffic_shift_probes_total => 'counter',
    traffic_shift_server_ejections_total => 'counter',
    traffic_shift_upstream_response_duration_seconds => 'histogram',
    traffic_shift_upstream_errors_total => 'counter',
    traffic_shift_rollout_step => 'gauge',
    traffic_shift_rollout_state => 'gauge',
    traffic_shift_rollouts_total => 'counter',
    # the families named by Prometheus' rules (t/75-metrics-names.t)
    traffic_shift_pool_weight_ratio => 'gauge',
    traffic_shift_pool_info => 'gauge',
    traffic_shift_pool_requests_total => 'counter',
    traffic_shift_pool_responses_total => 'counter',
    traffic_shift_weights_generation => 'gauge',
    traffic_shift_last_change_timestamp_seconds => 'gauge',
    traffic_shift_pool_upstream_response_duration_seconds => 'histogram',
    traffic_shift_pool_upstream_errors_total => 'counter',
    traffic_shift_rollout_current_step => 'gauge',
    traffic_shift_rollout_in_state => 'gauge',
    traffic_shift_rollouts_ended_total => 'counter',
    traffic_shift_upstream_servers => 'gauge',
    traffic_shift_upstream_live_servers => 'gauge',
    traffic_shift_server_down => 'gauge',
    traffic_shift_state_unsaved_changes => 'gauge',
);
is_deeply($m->{types}, \%families, 'TYPE of every family');
is_deeply([sort keys %{$m->{help}}], [sort keys %families],
    'HELP of every family');

is(TSProm::value($m, 'traffic_shift_weight', upstream => 'app',
                 pool => 'green'), 30, 'weight gauge');
is(TSProm::value($m, 'traffic_shift_requests_total', upstream => 'app',
                 pool => 'blue'), 0, 'requests start at 0');
is(TSProm::value($m, 'traffic_shift_generation', upstream => 'app'), 1,
    'generation');
is(TSProm::value($m, 'traffic_shift_weight', upstream => "we\"ird\\name",
                 pool => 'only'), 100,
    'label values escaped: quote and backslash');
is(TSProm::value($m, 'traffic_shift_server_up', upstream => 'app_green',
                 server => '127.0.0.1:' . $t->port('spare')), 0,
    'a server down in the configuration is not up');
is(TSProm::value($m, 'traffic_shift_server_up', upstream => 'app_green',
                 server => '127.0.0.1:' . $t->port('green1')), 1,
    'a server up');
is(scalar TSProm::samples($m, 'traffic_shift_probes_total'), 0,
    'no probes without health_check');

# traffic: each pool answers with its own status class

my %status;
my $n = 1000;
for (1 .. $n) {
    $status{$t->get('/', quiet => 1)->{status}}++;
}
for (1 .. 7) {
    $status{weird}++ if $t->get('/weird/', quiet => 1)->{status} == 200;
}
$m = metrics();

my %req = map {
    $_ => TSProm::value($m, 'traffic_shift_requests_total',
                        upstream => 'app', pool => $_)
} qw(blue green canary);
is($req{blue} + $req{green} + $req{canary}, $n, "requests total $n");
is($req{blue}, $status{200}, 'blue requests: the 200 answers');
is($req{green}, $status{404}, 'green requests: the 404 answers');
is($req{canary}, $status{503}, 'canary requests: the 503 answers');
# two workers, each exact over its own share
ok(abs($req{blue} - 500) <= 2 && abs($req{green} - 300) <= 2
   && abs($req{canary} - 200) <= 2,
   "split 50/30/20: $req{blue}/$req{green}/$req{canary}");

my %class = (blue => '2xx', green => '4xx', canary => '5xx');
for my $pool (sort keys %class) {
    for my $c (qw(1xx 2xx 3xx 4xx 5xx)) {
        is(TSProm::value($m, 'traffic_shift_responses_total',
                         upstream => 'app', pool => $pool, code => $c),
           $c eq $class{$pool} ? $req{$pool} : 0,
           "responses $pool $c");
    }
}
is(TSProm::value($m, 'traffic_shift_requests_total',
                 upstream => "we\"ird\\name", pool => 'only'), 7,
    'requests of the other upstream');

# API requests and proxied requests elsewhere are not counted

$t->get('/traffic/upstreams', port => 'api') for 1 .. 5;
is(TSProm::value(metrics(), 'traffic_shift_requests_total',
                 upstream => 'app', pool => 'blue'), $req{blue},
    'API requests are not counted');

# a change shows at once

my $r = $t->http('PATCH', '/rw/upstreams/app', port => 'api',
                 json => { weights => { blue => 12.5, green => 87.5 } });
is($r->{status}, 200, 'change the weights');
$r = $t->http('PATCH', '/rw/health/app_blue/servers/0', port => 'api',
              json => { down => JSON::PP::true });
is($r->{status}, 200, 'admin-down blue1');
$m = metrics();
is(TSProm::value($m, 'traffic_shift_weight', upstream => 'app',
                 pool => 'blue'), 12.5, 'weight 12.5');
is(TSProm::value($m, 'traffic_shift_weight', upstream => 'app',
                 pool => 'canary'), 0, 'weight 0');
is(TSProm::value($m, 'traffic_shift_generation', upstream => 'app'), 2,
    'generation 2');
is(TSProm::value($m, 'traffic_shift_server_up', upstream => 'app_blue',
                 server => '127.0.0.1:' . $t->port('blue1')), 0,
    'admin-down server: 0');

# counters survive a reload

ok($t->reload, 'reload');
$m = metrics();
is(TSProm::value($m, 'traffic_shift_requests_total', upstream => 'app',
                 pool => 'green'), $req{green}, 'counters kept on reload');
is(TSProm::value($m, 'traffic_shift_weight', upstream => 'app',
                 pool => 'green'), 87.5, 'runtime weights kept on reload');

# HEAD

$r = $t->head('/traffic/metrics', port => 'api');
is($r->{status}, 200, 'HEAD /metrics');
is($r->{body}, '', 'HEAD: no body');

# the checker itself catches broken expositions

for my $bad (["x{a=\"1\"} 1\nx{a=\"1\"} 2\n", 'duplicate series'],
             ["# TYPE x counter\nx{a=\"b\\q\"} 1\n", 'bad escape'],
             ["x 1\ny 1\nx{a=\"2\"} 1\n", 'samples of x are not together'],
             ["x 1\n# TYPE x gauge\n", 'TYPE of x after its samples'],
             ["x{a=\"1} 1\n", 'bad labels'],
             ["x one\n", "bad value"],
             ["x 1", 'no final newline'])
{
    my $e = TSProm::parse($bad->[0]);
    ok((grep { /\Q$bad->[1]\E/ } @{$e->{errors}}),
        "checker: $bad->[1]");
}

done_testing();
