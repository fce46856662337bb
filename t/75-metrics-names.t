#!/usr/bin/perl

# GET /metrics by Prometheus' naming rules (0.2.0): "promtool check
# metrics" finds nothing; the label "traffic_shift" names a traffic_shift
# upstream and "upstream" an upstream{} block; weights as ratios; the
# pool's info; a server's reasons to be down apart from server_up; the
# time of the last change; the state file's unsaved changes;
# ?servers=off.  And contrib/: the alerting and compatibility rules pass
# "promtool check rules", the alerts their unit tests (promtool test
# rules), the Grafana dashboard's queries parse.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSProm;
use TSCli qw(run_capture $ROOT);
use JSON::PP ();

my ($promtool) = grep { -x } map { "$_/promtool" } split /:/, $ENV{PATH};

my $t = TSTest->new(workers => 1);
$t->backend($_) for qw(blue1 blue2 green1);

$t->write_config(<<'EOF');
http {
    traffic_shift_state %%TESTDIR%%/no-such-dir/state.json;

    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%;
                       server 127.0.0.1:%%PORT_blue2%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%;
                       server 127.0.0.1:%%PORT_off%% down; }

    traffic_shift app {
        pool blue  u_blue  weight=87.5;
        pool green u_green weight=12.5;
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
$t->allow_log(qr/traffic_shift_state|no-such-dir/);
$t->start;

sub metrics {
    my ($query) = @_;
    my $r = $t->get('/traffic/metrics' . ($query // ''), port => 'api');
    is($r->{status}, 200, 'GET /metrics' . ($query // '') . ': 200');
    return $r->{body};
}

sub promtool_check {
    my ($what, $text) = @_;
    SKIP: {
        skip('promtool is not installed (Debian: prometheus)', 1)
            unless $promtool;
        my $r = run_capture({ dir => $t->testdir, stdin => $text },
                            $promtool, 'check', 'metrics');
        is($r->{rc} . $r->{out} . $r->{err}, '0',
           "promtool check metrics: $what");
    }
}

$t->get('/', quiet => 1) for 1 .. 20;
my $blue2 = '127.0.0.1:' . $t->port('blue2');
my $r = $t->http('PATCH', '/traffic/health/u_blue/servers/1', port => 'api',
    body => '{"down":true}',
    headers => { 'Content-Type' => 'application/json' });
is($r->{status}, 200, 'drain blue2');

my $text = metrics();
promtool_check('everything', $text);
my $m = TSProm::parse($text);
is_deeply($m->{errors}, [], 'the exposition parses');

is(TSProm::value($m, 'traffic_shift_pool_weight_ratio', traffic_shift => 'app',
                 pool => 'green'), '0.1250', 'weight ratio 0.1250');
is(TSProm::value($m, 'traffic_shift_pool_info', traffic_shift => 'app',
                 pool => 'green', upstream => 'u_green'), 1,
   'pool info: green is u_green');
is(TSProm::value($m, 'traffic_shift_pool_requests_total',
                 traffic_shift => 'app', pool => 'blue')
   + TSProm::value($m, 'traffic_shift_pool_requests_total',
                   traffic_shift => 'app', pool => 'green'), 20,
   'requests by pool');
my $changed = TSProm::value($m, 'traffic_shift_last_change_timestamp_seconds',
                            traffic_shift => 'app');
ok(defined $changed && abs($changed - time) < 600,
   "last change timestamp: $changed");
is(TSProm::value($m, 'traffic_shift_weights_generation',
                 traffic_shift => 'app'), 1, 'generation');
is(TSProm::value($m, 'traffic_shift_upstream_servers', upstream => 'u_green'),
   2, 'u_green: 2 servers');
is(TSProm::value($m, 'traffic_shift_upstream_live_servers',
                 upstream => 'u_green'), 1, 'u_green: 1 live');
is(TSProm::value($m, 'traffic_shift_upstream_live_servers',
                 upstream => 'u_blue'), 1, 'u_blue: 1 live (one drained)');
my $off = '127.0.0.1:' . $t->port('off');
is(TSProm::value($m, 'traffic_shift_server_down', upstream => 'u_green',
                 server => $off, reason => 'config'), 1,
   'a server down in the configuration: reason config');
is(TSProm::value($m, 'traffic_shift_server_down', upstream => 'u_blue',
                 server => $blue2, reason => 'admin'), 1,
   'a drained server: reason admin');
is(TSProm::value($m, 'traffic_shift_server_down', upstream => 'u_blue',
                 server => $blue2, reason => 'probe'), 0,
   '... not probe');
is(TSProm::value($m, 'traffic_shift_server_up', upstream => 'u_blue',
                 server => $blue2), 0, '... and not up');
ok(TSProm::value($m, 'traffic_shift_state_unsaved_changes') > 0,
   'the state file cannot be written: unsaved changes');
is(TSProm::value($m, 'traffic_shift_rollout_current_step',
                 traffic_shift => 'app'), 0, 'no rollout: step 0');

# "upstream" names upstream{} blocks only in the new families; the
# families of 0.1 keep their labels until 0.3.0
my %old = map { $_ => 1 } qw(traffic_shift_weight traffic_shift_requests_total
    traffic_shift_responses_total traffic_shift_generation
    traffic_shift_upstream_response_duration_seconds_bucket
    traffic_shift_upstream_response_duration_seconds_sum
    traffic_shift_upstream_response_duration_seconds_count
    traffic_shift_upstream_errors_total traffic_shift_rollout_step
    traffic_shift_rollout_state traffic_shift_rollouts_total);
my @bad = grep {
    !$old{$_->{name}} && defined $_->{labels}{upstream}
    && $_->{labels}{upstream} eq 'app'
} @{$m->{samples}};
is(scalar @bad, 0, 'no new family says upstream="app"')
    or diag(join ', ', map { $_->{name} } @bad);

# ?servers=off: no series per server, the counts stay
$text = metrics('?servers=off');
promtool_check('servers=off', $text);
$m = TSProm::parse($text);
is(scalar(TSProm::samples($m, 'traffic_shift_server_up')), 0,
   'servers=off: no server_up');
is(scalar(TSProm::samples($m, 'traffic_shift_server_down')), 0,
   'servers=off: no server_down');
is(TSProm::value($m, 'traffic_shift_upstream_live_servers',
                 upstream => 'u_blue'), 1, 'servers=off: live servers stay');

$t->stop;

# contrib/: rules and the dashboard's queries
SKIP: {
    skip('promtool is not installed (Debian: prometheus)', 4)
        unless $promtool;
    for my $f (qw(alerts.yml compat-0.1-rules.yml)) {
        my $r = run_capture({ dir => $t->testdir }, $promtool, 'check',
                            'rules', "$ROOT/contrib/prometheus/$f");
        is($r->{rc}, 0, "promtool check rules contrib/prometheus/$f")
            or diag($r->{out} . $r->{err});
    }
    # the alerts fire when they should, and only then
    my $r = run_capture({ dir => $t->testdir }, $promtool, 'test', 'rules',
                        "$ROOT/contrib/prometheus/alerts.test.yml");
    is($r->{rc}, 0, 'promtool test rules contrib/prometheus/alerts.test.yml')
        or diag($r->{out} . $r->{err});

    open(my $fh, '<', "$ROOT/contrib/grafana/nginx-traffic-shift.json")
        or die $!;
    my $dash = JSON::PP->new->decode(do { local $/; <$fh> });
    close $fh;
    my @exprs = map { $_->{expr} } map { @{$_->{targets}} }
                @{$dash->{panels}};
    push @exprs, map { $_->{expr} // () } @{$dash->{annotations}{list}};
    my $rules = "groups:\n  - name: dashboard\n    rules:\n";
    my $n = 0;
    for my $e (@exprs) {
        (my $x = $e) =~ s/\$__rate_interval|\$__range/5m/g;
        $x =~ s/\$\w+/.*/g;
        $x =~ s/'/''/g;
        $rules .= "      - record: dashboard:q$n\n        expr: '$x'\n";
        $n++;
    }
    $t->write_file('dashboard-rules.yml', $rules);
    $r = run_capture({ dir => $t->testdir }, $promtool, 'check', 'rules',
                        $t->testdir . '/dashboard-rules.yml');
    is($r->{rc}, 0, "the dashboard's $n queries parse")
        or diag($r->{out} . $r->{err});
}

done_testing();
