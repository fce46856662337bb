#!/usr/bin/perl

# A server listed twice in an upstream{} block (same address) gives no
# duplicate series in GET /metrics: every metric name and label set
# appears once, and the address keeps one state across reloads.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSProm;
use JSON::PP ();

my $t = TSTest->new;
$t->backend($_) for qw(blue1 green1);

$t->write_config(<<'EOF2');
http {
    upstream u_blue {
        server 127.0.0.1:%%PORT_blue1%%;
        server 127.0.0.1:%%PORT_blue1%%;
        health_check type=tcp interval=200ms;
    }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }

    traffic_shift app {
        pool blue  u_blue  weight=100;
        pool green u_green;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF2
$t->start;

ok($t->wait_for(sub {
       my $h = $t->get('/traffic/health/u_blue')->{json} or return 0;
       !grep { !$_->{last_probe} } @{$h->{servers} // []};
   }, timeout => 5, what => 'probes'), 'both entries probed');

my $text = $t->get('/traffic/metrics')->{body};
my $m = TSProm::parse($text);
is_deeply($m->{errors}, [], 'valid exposition, no duplicate series');

my $addr = '127.0.0.1:' . $t->port('blue1');
for my $metric (qw(traffic_shift_server_up traffic_shift_probes_total)) {
    my %seen;
    for my $sample (@{$m->{samples}}) {
        my $l = $sample->{labels};
        next unless $sample->{name} eq $metric
            && ($l->{server} // '') eq $addr;
        $seen{join ',', map { "$_=$l->{$_}" } sort keys %$l}++;
    }
    ok(%seen, "$metric has series for $addr");
    is_deeply([grep { $seen{$_} > 1 } sort keys %seen], [],
        "$metric: each label set of $addr once");
}

# the two entries are one server: a drain of either survives a reload

my $r = $t->patch('/traffic/health/u_blue/servers/1',
                   { down => JSON::PP::true });
is($r->{status}, 200, 'second entry drained');
$t->reload;
my $h = $t->get('/traffic/health/u_blue')->{json};
is_deeply([map { $_->{state} } @{$h->{servers}}], [qw(admin_down admin_down)],
    'after a reload both entries are still admin-down');

done_testing();
