#!/usr/bin/perl

# Runtime weights across reloads: kept when the zone is reused, carried
# over when the zone changes size or name, reset when the pool set
# changes; admin-down marks and counters follow the same records.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $template = <<'EOF';
http {
    ZONE
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%;
                       server 127.0.0.1:%%PORT_green2%%; }

    traffic_shift app {
        pool blue  u_blue  weight=100;
        pool green u_green;
        EXTRA
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /api/ { traffic_shift_api write=on; }
    }
}
EOF

sub conf {
    my (%o) = @_;
    (my $c = $template) =~ s/ZONE/$o{zone} ? "traffic_shift_zone $o{zone};" : ''/e;
    $c =~ s/EXTRA/$o{extra} \/\/ ''/e;
    return $c;
}

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 green1 green2);
$t->write_config(conf());
$t->start;

sub state {
    my $r = $t->get('/api/upstreams/app', port => 'api');
    return $r->{json};
}

my $r = $t->patch('/api/upstreams/app', { weights => { blue => 30,
    green => 70 } }, port => 'api');
is($r->{status}, 200, 'runtime weights 30/70 set through the API');
my $gen = $r->{json}{generation};

$r = $t->patch('/api/health/u_green/servers/1', { down => JSON::PP::true },
    port => 'api');
is($r->{status}, 200, 'green2 admin-down');

my $c = $t->count_backends(n => 100);
ok(!$c->{green2}, 'green2 gets no request while admin-down');

my @steps = (
    [ 'reload, same zone', conf() ],
    [ 'reload, default zone resized to 2m', conf(zone => 'shift 2m') ],
    [ 'reload, zone renamed', conf(zone => 'other 2m') ],
    [ 'reload, zone of 4m', conf(zone => 'other 4m') ],
);

for my $step (@steps) {
    my ($name, $conf) = @$step;
    ok($t->reload($conf), $name);
    my $s = state();
    is_deeply($s->{weights}, { blue => 30, green => 70 },
        "$name: runtime weights kept");
    is($s->{source}, 'api', "$name: source still api");
    is($s->{generation}, $gen, "$name: generation unchanged");
    $c = $t->count_backends(n => 100);
    ok(abs(($c->{blue1} // 0) - 30) <= 2 && !$c->{green2}
        && ($c->{green1} // 0) >= 68,
        "$name: traffic follows 30/70, admin-down kept")
        or diag(explain $c);
}

# a pool added: that upstream resets to its configured weights
ok($t->reload(conf(zone => 'other 4m', extra => 'pool canary u_blue;')),
    'reload with a third pool');
my $s = state();
is_deeply($s->{weights}, { blue => 100, green => 0, canary => 0 },
    'pool set changed: configured weights');
is($s->{source}, 'config', 'source is config again');
ok($s->{generation} > $gen, 'generation moved on');
like($t->error_log, qr/pools changed, weights reset to the configuration/,
    'the reset is logged');

done_testing();
