#!/usr/bin/perl

# Weighted choice between pools: smooth weighted round robin is exact per
# worker; $traffic_shift_pool always names the pool that answered.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $conf = <<'EOF';
http {
    upstream u_blue   { server 127.0.0.1:%%PORT_blue1%%;
                        server 127.0.0.1:%%PORT_blue2%%; }
    upstream u_green  { server 127.0.0.1:%%PORT_green1%%; }
    upstream u_canary { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift two {
        pool blue   u_blue   weight=90;
        pool canary u_canary weight=10;
    }

    traffic_shift three {
        pool blue   u_blue   weight=50;
        pool green  u_green  weight=30;
        pool canary u_canary weight=20;
    }

    traffic_shift odd {
        pool blue   u_blue   weight=33.33;
        pool green  u_green  weight=33.33;
        pool canary u_canary weight=33.34;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        add_header X-Pool $traffic_shift_pool always;
        location /two/   { proxy_pass http://two; }
        location /three/ { proxy_pass http://three; }
        location /odd/   { proxy_pass http://odd; }
        location /none/  { return 200 "[$traffic_shift_pool]"; }
    }
}
EOF

# pool counts, and how many answers came from another pool than named
sub pools {
    my ($t, $path, $n) = @_;
    my (%pool, $mismatch, $failed);
    for (1 .. $n) {
        my $r = $t->get($path, quiet => 1);
        $failed++, next if $r->{status} != 200;
        my $p = $r->{headers}{'x-pool'} // '';
        my $b = $r->{headers}{'x-backend'} // '';
        $mismatch++ unless $p ne '' && $b =~ /^\Q$p\E\d+$/;
        $pool{$p}++;
    }
    return (\%pool, $mismatch // 0, $failed // 0);
}

my $t = TSTest->new(workers => 1);
$t->backend($_) for qw(blue1 blue2 green1 canary1);
$t->write_config($conf);
$t->start;

my ($p, $mis, $fail) = pools($t, '/two/', 1000);
is($fail, 0, '90/10: no failed request');
is($mis, 0, '90/10: X-Pool names the pool of the backend that answered');
is($p->{blue}, 900, '90/10, one worker: exactly 900 to blue');
is($p->{canary}, 100, '90/10, one worker: exactly 100 to canary');

($p, $mis, $fail) = pools($t, '/three/', 1000);
is($fail + $mis, 0, '50/30/20: all answered by the pool named');
is_deeply($p, { blue => 500, green => 300, canary => 200 },
    '50/30/20, one worker: exact');

($p, $mis, $fail) = pools($t, '/odd/', 10000);
is($fail + $mis, 0, '33.33/33.33/33.34: all answered by the pool named');
is_deeply($p, { blue => 3333, green => 3333, canary => 3334 },
    '33.33/33.33/33.34 over 10000 requests: exact');

# within a pool, its own round robin still alternates the servers
my $c = $t->count_backends(n => 100, path => '/three/');
is($c->{blue1}, $c->{blue2}, 'round robin inside the pool is kept');

my $r = $t->get('/none/');
is($r->{body}, '[]', '$traffic_shift_pool is empty where nothing proxies');

$t->stop;

# two workers: each is exact, so the total is within one per worker
my $t2 = TSTest->new(workers => 2);
$t2->backend($_) for qw(blue1 blue2 green1 canary1);
$t2->write_config($conf);
$t2->start;

($p, $mis, $fail) = pools($t2, '/two/', 1000);
is($fail + $mis, 0, 'two workers: all answered by the pool named');
ok(abs(($p->{blue} // 0) - 900) <= 2 && abs(($p->{canary} // 0) - 100) <= 2,
    'two workers: 90/10 within one per worker (blue '
    . ($p->{blue} // 0) . ', canary ' . ($p->{canary} // 0) . ')');

done_testing();
