#!/usr/bin/perl

# Flips under load: clients send requests as fast as they can while the
# active pool changes through the admin API every 100 ms, cycling through
# three pools (so that an older state cannot pass for the new one).  No
# request fails, every answer is a 200 from a backend of the pool named,
# and no request that started after a flip was answered is served by a
# pool that flip or a later one replaced.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use TSTest;
use TSStress qw(now dur short);

my $DURATION = dur(20, 4);          # seconds of flips
my $STEP = 0.1;                     # between two flips
my $CLIENTS = 3;
my @POOLS = qw(blue green canary);

my $t = TSTest->new(workers => 2, log_level => 'notice');
$t->backend($_) for map { ("${_}1", "${_}2") } @POOLS;

$t->write_config(<<'EOF');
http {
    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%;
                          server 127.0.0.1:%%PORT_blue2%%; keepalive 8; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%;
                          server 127.0.0.1:%%PORT_green2%%; keepalive 8; }
    upstream app_canary { server 127.0.0.1:%%PORT_canary1%%;
                          server 127.0.0.1:%%PORT_canary2%%; keepalive 8; }

    traffic_shift app {
        pool blue   app_blue   weight=100;
        pool green  app_green;
        pool canary app_canary;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        access_log off;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            add_header X-Pool $traffic_shift_pool always;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        access_log off;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
$t->start;

my $dir = $t->testdir;
my $port = $t->port('main');

is($t->get('/')->{headers}{'x-pool'}, 'blue', 'blue is active at start');

# load: keep-alive clients that reconnect now and then (so that both
# workers serve each of them), and one with a connection per request;
# wrk adds pressure in the full run

my @clients = map {
    TSStress::client($dir, "client$_", port => $port,
                     per_conn => $_ == 1 ? 1 : 50)
} 1 .. $CLIENTS;

my $wrk = short() ? undef : TSStress::wrk($dir, $port, $DURATION + 1);

# flips, one every STEP, each timed from before its connection to the end
# of its answer

my (@flips, @refused);
my $gen = $t->get('/traffic/upstreams/app', port => 'api')->{json}{generation};
my $first_gen = $gen;
my $active = 'blue';
my $t0 = now();
my $next = $t0 + 0.3;

while (now() < $t0 + 0.3 + $DURATION) {
    my $wait = $next - now();
    Time::HiRes::sleep($wait) if $wait > 0;
    $next += $STEP;

    my ($i) = grep { $POOLS[$_] eq $active } 0 .. $#POOLS;
    my $to = $POOLS[($i + 1) % @POOLS];

    my $sent = now();
    my $r = $t->patch('/traffic/upstreams/app', { active => $to },
                      port => 'api', quiet => 1);
    my $answered = now();

    if ($r->{status} != 200) {
        push @refused, "$r->{status} " . ($r->{error} // $r->{body});
        last;
    }
    push @flips, { sent => $sent, answered => $answered, pool => $to,
                   generation => $r->{json}{generation} };
    $active = $to;
}
my $t1 = now();

my @outs = TSStress::finish(15, @clients);
my $wrk_out = $wrk ? (TSStress::collect($DURATION + 15, $wrk))[0] : undef;

# the flips

is_deeply(\@refused, [], 'every flip answered 200');
# one every STEP unless the machine is very slow
my $expected = int($DURATION / $STEP / 2);
cmp_ok(scalar @flips, '>=', $expected, scalar(@flips) . ' flips');
is_deeply([map { $_->{generation} } @flips],
          [$first_gen + 1 .. $first_gen + @flips],
          'generation +1 per flip');
my @lat = sort { $a <=> $b } map { $_->{answered} - $_->{sent} } @flips;

# the requests

my @rec = TSStress::records(@outs);
my $s = TSStress::summary(@rec);

cmp_ok($s->{total}, '>', 10 * @flips, 'requests: ' . $s->{total});
is($s->{failed}, 0, 'no failed request');
is_deeply($s->{status}, { 200 => $s->{total} - $s->{failed} },
          'every answer 200');
is($s->{mismatch}, 0, 'every answer from a backend of the pool named');
diag('first problems: ' . join("\n", map { TSStress::show($_) }
                                     @{$s->{bad}}[0 .. 4]))
    if @{$s->{bad}};

my ($bad, $strict) = TSStress::check_flips('blue', \@flips, @rec);
is(scalar @$bad, 0, 'no answer from a pool a flip had replaced');
diag(join "\n", map { TSStress::show($_) . " allowed $_->{allowed} "
                      . "(states $_->{states})" } @{$bad}[0 .. 9])
    if @$bad;

# most requests fall between two flips: each of them had one pool allowed
cmp_ok($strict, '>', $s->{total} / 2,
       "$strict requests between two flips checked exactly");

# every pool served between flips
for my $p (@POOLS) {
    cmp_ok($s->{pool}{$p} // 0, '>', 0, "pool $p served");
}

my $w;
if (defined $wrk_out) {
    $w = TSStress::wrk_result($wrk_out);
    ok($w->{requests}, 'wrk ran') or diag($wrk_out);
    is($w->{non2xx}, 0, 'wrk: no non-2xx answer');
    is($w->{errors}, 0, 'wrk: no socket error') or diag($wrk_out);
}

# the state afterwards: the last flip

my $g = $t->get('/traffic/upstreams/app', port => 'api');
is($g->{json}{generation}, $first_gen + @flips, 'generation of the last flip');
is_deeply($g->{json}{weights},
          { map { $_ => $_ eq $active ? 100 : 0 } @POOLS },
          "weights of the last flip ($active)");
my $c = $t->count_backends(n => 20, header => 'x-pool');
is_deeply($c, { $active => 20 }, 'traffic follows the last flip');

note(sprintf('%d flips in %.1f s (API %.2f ms median, %.2f ms max); '
    . '%d requests (%.0f/s), %d checked exactly, %d retried; wrk: %s',
    scalar @flips, $t1 - $t0, 1000 * $lat[@lat / 2], 1000 * $lat[-1],
    $s->{total}, $s->{total} / ($t1 - $t0), $strict, $s->{retried},
    $w ? "$w->{requests} requests, $w->{rate}/s" : 'not run'));

done_testing();
