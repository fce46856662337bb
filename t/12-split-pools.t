#!/usr/bin/perl

# A pool is an ordinary upstream{}: keepalive, zone, backup, server
# weights and proxy_next_upstream keep working inside it, and retries
# stay in the chosen pool.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $t = TSTest->new(workers => 1);
$t->backend($_) for qw(blue1 blue2 green1 canary1);
$t->port('dead');

$t->write_config(<<'EOF');
http {
    upstream u_ka {
        server 127.0.0.1:%%PORT_ka%%;
        keepalive 4;
    }
    upstream u_zone {
        zone u_zone 64k;
        server 127.0.0.1:%%PORT_canary1%%;
    }
    upstream u_backup {
        server 127.0.0.1:%%PORT_dead%%;
        server 127.0.0.1:%%PORT_blue2%% backup;
    }
    upstream u_weighted {
        server 127.0.0.1:%%PORT_blue1%% weight=3;
        server 127.0.0.1:%%PORT_blue2%% weight=1;
    }
    upstream u_retry {
        server 127.0.0.1:%%PORT_dead%% max_fails=0;
        server 127.0.0.1:%%PORT_blue1%%;
    }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    upstream u_echo  { server 127.0.0.1:%%PORT_echo%%; }

    traffic_shift ka       { pool blue u_ka weight=100; }
    traffic_shift zoned    { pool green u_green weight=50;
                             pool canary u_zone weight=50; }
    traffic_shift backup   { pool blue u_backup weight=100; }
    traffic_shift weighted { pool blue u_weighted weight=100; }
    traffic_shift retry    { pool blue u_retry weight=50;
                             pool green u_green weight=50; }
    traffic_shift echo     { pool echo u_echo weight=100; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        add_header X-Pool $traffic_shift_pool always;
        add_header X-Upstream $upstream_addr always;

        location /ka/ {
            proxy_pass http://ka;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /zoned/    { proxy_pass http://zoned; }
        location /backup/   { proxy_pass http://backup; }
        location /weighted/ { proxy_pass http://weighted; }
        location /retry/ {
            proxy_pass http://retry;
            proxy_next_upstream error timeout;
        }
        location /echo/ {
            proxy_pass http://echo;
            proxy_set_header X-Pool-Sent $traffic_shift_pool;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_ka%%;
        keepalive_requests 1000;
        location / { return 200 "$connection_requests"; }
    }

    server {
        listen 127.0.0.1:%%PORT_echo%%;
        location / { return 200 "[$http_x_pool_sent]"; }
    }
}
EOF
$t->start;

# keepalive: later requests reuse the pool's cached connection
my $max = 0;
for (1 .. 20) {
    my $r = $t->get('/ka/', quiet => 1);
    $max = $r->{body} if $r->{status} == 200 && $r->{body} > $max;
}
ok($max > 1, "keepalive connections of the pool are reused ($max)");

# zone: the pool's peers in shared memory work the same
my $c = $t->count_backends(n => 100, path => '/zoned/');
is_deeply($c, { green1 => 50, canary1 => 50 }, 'pool with zone: 50/50');

# backup: the primary refuses connections, the backup answers
$c = $t->count_backends(n => 20, path => '/backup/');
is_deeply($c, { blue2 => 20 }, 'backup server of the pool answers');

# server weights inside the pool
$c = $t->count_backends(n => 400, path => '/weighted/');
is_deeply($c, { blue1 => 300, blue2 => 100 }, 'server weights 3:1 kept');

# retries stay in the pool
my ($retried, $leaked, $failed) = (0, 0, 0);
for (1 .. 200) {
    my $r = $t->get('/retry/', quiet => 1);
    $failed++, next unless $r->{status} == 200;
    my $pool = $r->{headers}{'x-pool'};
    my $backend = $r->{headers}{'x-backend'};
    $leaked++ if $pool eq 'blue' && $backend ne 'blue1';
    $leaked++ if $pool eq 'green' && $backend ne 'green1';
    $retried++ if $pool eq 'blue' && $r->{headers}{'x-upstream'} =~ /, /;
}
is($failed, 0, 'no request failed with a dead server in the pool');
is($leaked, 0, 'no answer came from another pool than chosen');
ok($retried > 0, "retries happened inside the pool ($retried)");

# the variable evaluated before connecting decides, and routing agrees
my $r = $t->get('/echo/');
is($r->{body}, '[echo]', 'variable in proxy_set_header names the pool');
is($r->{headers}{'x-pool'}, 'echo', 'and the response header agrees');

done_testing();
