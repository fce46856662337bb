#!/usr/bin/perl

# Reloads under load: with weights set through the admin API (30/70) and
# health checks probing every server, nginx is reloaded 10 times while
# clients send requests as fast as they can.  No request fails, the
# runtime weights stay (same generation, source "api") and traffic keeps
# following them, weights that come from the configuration follow each new
# configuration, and no server is marked down.  Then reloads while the
# active pool flips: every change is kept and requests follow them.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use TSTest;
use TSStress qw(now dur short);

my $RELOADS = 10;
my $PAUSE = dur(1, 0.2);            # load between two reloads, seconds

my $t = TSTest->new(workers => 2, log_level => 'notice');

# The backends run in an nginx of their own, as they would in production:
# backends inside the nginx being reloaded close kept-alive upstream
# connections as their old workers exit, and nginx's proxy then counts
# failures against them (max_fails) and answers 502 "no live upstreams",
# with or without this module.
my $backends =
    TSTest::Backends->new(backends => [qw(blue1 blue2 green1 green2)]);
$backends->start;

# "cfg" keeps configured weights, which change at every reload
my $conf = <<'EOF';
http {
    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%;
                          server 127.0.0.1:%%PORT_blue2%%; keepalive 8;
                          health_check uri=/healthz interval=200ms
                                       timeout=1s; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%;
                          server 127.0.0.1:%%PORT_green2%%; keepalive 8;
                          health_check uri=/healthz interval=200ms
                                       timeout=1s; }

    traffic_shift app {
        pool blue   app_blue   weight=100;
        pool green  app_green;
    }

    traffic_shift cfg {
        pool blue   app_blue   weight=CFG_BLUE;
        pool green  app_green  weight=CFG_GREEN;
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

my @cfg = ([50, 50], [100, 0], [20, 80], [0, 100]);

sub config {
    my ($i) = @_;
    my ($cb, $cg) = @{$cfg[$i % @cfg]};
    (my $c = $conf) =~ s/CFG_BLUE/$cb/;
    $c =~ s/CFG_GREEN/$cg/;
    return $c;
}

sub api { $t->http($_[0], "/traffic$_[1]", port => 'api', @_[2 .. $#_]) }

$t->write_config(config(0));
$t->start;

my $dir = $t->testdir;
my $port = $t->port('main');

my $r = api('PATCH', '/upstreams/app', json => { weights =>
                                                 { blue => 30, green => 70 } });
is($r->{status}, 200, 'weights 30/70 through the API');
my $gen = $r->{json}{generation};

my @clients = map {
    TSStress::client($dir, "client$_", port => $port,
                     per_conn => $_ == 1 ? 1 : 50)
} 1 .. 3;

# load before, between and after the reloads

my (@reloads, @failed);
my $t0 = now();
Time::HiRes::sleep($PAUSE);

for my $i (1 .. $RELOADS) {
    my $from = now();
    my $ok = $t->reload(config($i));
    my $to = now();
    push @reloads, { from => $from, to => $to };
    push @failed, $i unless $ok;

    my $app = api('GET', '/upstreams/app')->{json};
    my $cfg = api('GET', '/upstreams/cfg')->{json};
    my ($cb, $cg) = @{$cfg[$i % @cfg]};
    push @failed, "$i: app " . JSON::PP->new->canonical->encode($app)
        unless $app->{generation} == $gen && $app->{source} eq 'api'
            && $app->{weights}{blue} == 30 && $app->{weights}{green} == 70;
    push @failed, "$i: cfg " . JSON::PP->new->canonical->encode($cfg)
        unless $cfg->{source} eq 'config'
            && $cfg->{weights}{blue} == $cb && $cfg->{weights}{green} == $cg;

    Time::HiRes::sleep($PAUSE);
}
my $t1 = now();

my @outs = TSStress::finish(15, @clients);

is_deeply(\@failed, [], "$RELOADS reloads, after each: app 30/70 from the "
    . 'API, generation kept; cfg as configured');

my @rec = TSStress::records(@outs);
my $s = TSStress::summary(@rec);

cmp_ok($s->{total}, '>', 100 * $RELOADS, "requests: $s->{total}");
is($s->{failed}, 0, 'no failed request');
is_deeply($s->{status}, { 200 => $s->{total} - $s->{failed} },
          'every answer 200');
is($s->{mismatch}, 0, 'every answer from a backend of the pool named');
diag('first problems: ' . join("\n", map { TSStress::show($_) }
                                     @{$s->{bad}}[0 .. 4]))
    if @{$s->{bad}};

# load was running during every reload
my @during = map {
    my $rl = $_;
    scalar grep { $_->{start} >= $rl->{from} && $_->{start} <= $rl->{to} } @rec
} @reloads;
is(scalar(grep { $_ == 0 } @during), 0, 'requests sent during every reload')
    or diag("requests during each reload: @during");

# the weights, request by request (exact per worker, so within 1%)
my $blue = $s->{pool}{blue} // 0;
my $share = $s->{total} ? $blue / $s->{total} : 0;
ok(abs($share - 0.30) < 0.01,
   sprintf('blue served %.2f%% of the requests (30%%)', 100 * $share));

# after the reloads

my $app = api('GET', '/upstreams/app')->{json};
is($app->{generation}, $gen, 'generation unchanged');
is($app->{source}, 'api', 'source api');
is_deeply($app->{weights}, { blue => 30, green => 70 }, 'weights 30/70');

my $c = $t->count_backends(n => 100, header => 'x-pool');
ok(($c->{blue} // 0) >= 28 && ($c->{blue} // 0) <= 32
   && ($c->{blue} // 0) + ($c->{green} // 0) == 100,
   'traffic follows 30/70 after the reloads')
    or diag(explain($c));

my $h = api('GET', '/health')->{json};
my @down = map { my $u = $_; map { "$u/$_->{address} $_->{state}" }
                 grep { $_->{state} ne 'up' } @{$h->{$u}{servers}} }
           qw(app_blue app_green);
is_deeply(\@down, [], 'every server up');
unlike($t->error_log, qr/is down after|health check of server .* failed/,
       'no probe failed');

my @rt = sort { $a <=> $b } map { $_->{to} - $_->{from} } @reloads;
note(sprintf('%d reloads (%.2f s median, %.2f s max) in %.1f s; '
    . '%d requests (%.0f/s), %d during reloads, %d retried on a kept-alive '
    . 'connection closed by an exiting worker',
    scalar @reloads, $rt[@rt / 2], $rt[-1], $t1 - $t0, $s->{total},
    $s->{total} / ($t1 - $t0), eval { my $n = 0; $n += $_ for @during; $n },
    $s->{retried}));


# Reloads while the active pool flips every 100 ms: every change answered
# 200 (a reload that keeps the pools never refuses one), the last one
# survives, and requests follow the flips in old and new workers alike.

my $FLIP_RELOADS = dur(10, 5);

$r = api('PATCH', '/upstreams/app', json => { active => 'blue' });
is($r->{status}, 200, 'blue active');
$gen = $r->{json}{generation};

@clients = map {
    TSStress::client($dir, "flipping$_", port => $port,
                     per_conn => $_ == 1 ? 1 : 50)
} 1 .. 3;

# the flipper: one line per change, "SENT ANSWERED POOL STATUS GENERATION"
my $flipper = TSStress::spawn($dir, 'flipper', sub {
    my ($stop) = @_;
    my ($active, @out) = ('blue');
    my $next = now();
    while (!$$stop) {
        my $to = $active eq 'blue' ? 'green' : 'blue';
        my $sent = now();
        my $p = api('PATCH', '/upstreams/app', json => { active => $to },
                    quiet => 1);
        push @out, sprintf("%.6f %.6f %s %d %s\n", $sent, now(), $to,
            $p->{status}, ($p->{json} // {})->{generation} // '-');
        $active = $to if $p->{status} == 200;
        $next += 0.1;
        Time::HiRes::sleep($next - now()) if $next > now();
    }
    return join '', @out;
});

@failed = ();
$t0 = now();
for my $i (1 .. $FLIP_RELOADS) {
    Time::HiRes::sleep($PAUSE);
    push @failed, $i unless $t->reload(config($i));
}
Time::HiRes::sleep($PAUSE);
$t1 = now();

my ($flips_out) = TSStress::finish(5, $flipper);
@outs = TSStress::finish(15, @clients);
is_deeply(\@failed, [], "$FLIP_RELOADS reloads while flipping");

my (@flips, @refused);
for my $line (split /\n/, $flips_out) {
    my ($sent, $answered, $pool, $status, $g) = split ' ', $line;
    if ($status != 200) {
        push @refused, "$status at $sent";
        next;
    }
    push @flips, { sent => $sent, answered => $answered, pool => $pool,
                   generation => $g };
}
is_deeply(\@refused, [], 'every change answered 200');
cmp_ok(scalar @flips, '>', ($t1 - $t0) / 0.1 / 2,
       scalar(@flips) . ' changes');
is_deeply([map { $_->{generation} } @flips],
          [$gen + 1 .. $gen + @flips], 'generation +1 per change');

$app = api('GET', '/upstreams/app')->{json};
is($app->{generation}, $gen + @flips, 'the last change is kept: generation');
is_deeply($app->{weights},
          { map { $_ => $_ eq $flips[-1]{pool} ? 100 : 0 } qw(blue green) },
          'the last change is kept: weights');

@rec = TSStress::records(@outs);
$s = TSStress::summary(@rec);
cmp_ok($s->{total}, '>', 100, "requests: $s->{total}");
is($s->{failed}, 0, 'no failed request');
is_deeply($s->{status}, { 200 => $s->{total} - $s->{failed} },
          'every answer 200');
is($s->{mismatch}, 0, 'every answer from a backend of the pool named');
my ($bad, $strict) = TSStress::check_flips('blue', \@flips, @rec);
is(scalar @$bad, 0, 'no answer from a pool a change had replaced');
diag(join "\n", map { TSStress::show($_) . " allowed $_->{allowed} "
                      . "(states $_->{states})" } @{$bad}[0 .. 9])
    if @$bad;

note(sprintf('%d reloads and %d changes in %.1f s; %d requests, %d checked '
    . 'exactly, %d retried', $FLIP_RELOADS, scalar @flips, $t1 - $t0,
    $s->{total}, $strict, $s->{retried}));

done_testing();
