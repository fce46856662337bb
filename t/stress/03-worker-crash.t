#!/usr/bin/perl

# Workers killed with SIGKILL, one every second at a random moment, while
# the active pool flips through the admin API (with If-Match), a state file
# is written after every change, health checks probe every server and
# clients send requests.  The API keeps answering (every call within 2 s:
# no lock is left held, nothing deadlocks), every change is accounted for
# (generation +1 per change applied, GET always shows the last one, a
# change whose answer was lost with its worker is either fully applied or
# not at all), requests follow the flips also in respawned workers, probes
# go on (every server's probe counter keeps growing) and a backend stopped
# meanwhile is marked down.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use JSON::PP ();
use TSProm;
use TSTest;
use TSStress qw(now dur short);

my $DURATION = dur(20, 5);          # seconds of kills
my $KILL_EVERY = 1;                 # a random worker, at a random time
my $AIM_EVERY = 0.5;                # the worker serving a change
my $STEP = 0.02;                    # between two flips
my $SAMPLE = 0.2;                   # between two reads of /metrics
my $TIMEOUT = 2;                    # the longest an API call may take
my $PROBE_GAP = 2;                  # the longest a server may go unprobed:
                                    # lease (interval + timeout), another
                                    # worker's timer, the probe, sampling

my $JSON = JSON::PP->new->canonical;

my $t = TSTest->new(workers => 2, log_level => 'notice');
my $backends = TSTest::Backends->new(backends => [qw(blue1 green1 green2)]);
$backends->start;

# blue2 alone in an nginx of its own, stopped half way: its kept-alive
# connections are closed by that nginx, not by a reload of the others
my $lone = TSTest::Backends->new(backends => ['blue2']);
$lone->start;

$t->write_config(<<'EOF');
http {
    traffic_shift_state %%TESTDIR%%/state.json;

    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%;
                          server 127.0.0.1:%%PORT_blue2%%; keepalive 8;
                          health_check uri=/healthz interval=200ms
                                       timeout=200ms fails=2; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%;
                          server 127.0.0.1:%%PORT_green2%%; keepalive 8;
                          health_check uri=/healthz interval=200ms
                                       timeout=200ms fails=2; }

    traffic_shift app {
        pool blue   app_blue   weight=100;
        pool green  app_green;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        access_log off;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream error timeout;
            add_header X-Pool $traffic_shift_pool always;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        access_log off;
        location /traffic/ { traffic_shift_api write=on; }
        add_header X-Worker $pid always;
    }
}
EOF
$t->start;

# what nginx itself logs when a worker is killed, and when the killed
# worker held the zone's mutex (the master then frees it)
$t->allow_log(qr/worker process \d+ exited on signal 9/);
$t->allow_log(qr/shared memory zone "[^"]+" was locked by \d+/);

my $dir = $t->testdir;
my @SERVERS = map { "127.0.0.1:" . $t->port($_) }
              qw(blue1 blue2 green1 green2);
my $BLUE2 = "127.0.0.1:" . $t->port('blue2');

my (@problems, @slow, %n, @flips, @samples, @patch_time);

# an API call; a connection lost with its worker is retried (GET only)
sub api {
    my ($method, $path, %o) = @_;
    my $tries = $method eq 'GET' ? 5 : 1;
    my $r;
    for (1 .. $tries) {
        my $from = now();
        $r = $t->http($method, "/traffic$path", port => 'api',
                      timeout => $TIMEOUT + 1, quiet => 1, %o);
        my $took = now() - $from;
        push @slow, sprintf('%s %s: %.2f s', $method, $path, $took)
            if $took > $TIMEOUT;
        $r->{answered} = now();
        $n{lost}++ if $r->{status} == 599;
        return $r unless $r->{status} == 599 && !hung($r);
    }
    return $r;
}

sub hung { ($_[0]{error} // '') =~ /timeout/ }

sub weights_of {
    my ($active) = @_;
    return { blue => $active eq 'blue' ? 100 : 0,
             green => $active eq 'green' ? 100 : 0 };
}

sub show { $JSON->encode($_[0] // {}) }

my $r = api('GET', '/upstreams/app');
my $gen = $r->{json}{generation};
my $first_gen = $gen;
my $active = 'blue';

# checks GET /upstreams/app against what was accepted last
sub check_state {
    my ($when) = @_;
    my $g = api('GET', '/upstreams/app');
    $n{get}++;
    if ($g->{status} != 200) {
        push @problems, "$when: GET: $g->{status} "
            . ($g->{error} // $g->{body});
        return;
    }
    my $w = $g->{json}{weights};
    my $sum = 0;
    $sum += $_ for values %$w;
    push @problems, "$when: GET: generation $g->{json}{generation}, "
        . "weights " . show($w) . ", expected generation $gen, $active"
        unless $g->{json}{generation} == $gen && $sum == 100
            && show($w) eq show(weights_of($active));
}

my $killer = TSStress::killer($dir, $t->master_pid, $KILL_EVERY);
my @clients = map {
    TSStress::client($dir, "client$_", port => $t->port('main'),
                     per_conn => $_ == 1 ? 1 : 20)
} 1 .. 2;

# a change, and what came of it
sub flip {
    my ($aim) = @_;
    my $to = $active eq 'blue' ? 'green' : 'blue';
    my $sent = now();
    my $p;

    if ($aim) {
        # kill the worker serving this change, at a random moment of it
        my $body = $JSON->encode({ active => $to });
        my $a = TSStress::request_and_kill($t->port('api'),
            "GET /traffic/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
            "PATCH /traffic/upstreams/app HTTP/1.1\r\nHost: localhost\r\n"
            . "If-Match: \"$gen\"\r\nContent-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n"
            . "Connection: close\r\n\r\n$body",
            rand() < 0.25 ? 0 : rand(0.008), timeout => $TIMEOUT + 1);
        push @slow, sprintf('aimed PATCH: %.2f s', $a->{answered} - $sent)
            if $a->{answered} - $sent > $TIMEOUT;
        $n{aimed}++;
        $n{aimed_killed}++ if $a->{killed};
        $p = { status => $a->{status} || 599, error => $a->{error},
               body => $a->{body}, answered => $a->{answered},
               json => scalar eval { $JSON->decode($a->{body} // '') } };
        $n{aimed_lost}++ if $p->{status} == 599;
    } else {
        $p = api('PATCH', '/upstreams/app', json => { active => $to },
                 headers => { 'If-Match' => "\"$gen\"" });
        push @patch_time, $p->{answered} - $sent;
    }

    if ($p->{status} == 200) {
        $n{accepted}++;
        push @problems, "PATCH answered " . show($p->{json})
            . ", expected generation " . ($gen + 1) . ", $to"
            unless $p->{json}{generation} == $gen + 1
                && show($p->{json}{weights}) eq show(weights_of($to));
        $gen++;
        $active = $to;
        push @flips, { sent => $sent, answered => $p->{answered},
                       pool => $to };

    } elsif ($p->{status} == 599 && !hung($p)) {
        # the worker died with the request: applied or not, not half
        $n{in_doubt}++;
        my $g = api('GET', '/upstreams/app');
        my $j = $g->{json} // {};
        if ($g->{status} == 200 && $j->{generation} == $gen + 1
            && show($j->{weights}) eq show(weights_of($to)))
        {
            $n{in_doubt_applied}++;
            $n{aimed_applied}++ if $aim;
            $gen++;
            $active = $to;
            push @flips, { sent => $sent, answered => $g->{answered},
                           pool => $to };
        } elsif (!($g->{status} == 200 && $j->{generation} == $gen
                   && show($j->{weights}) eq show(weights_of($active))))
        {
            push @problems, "after a lost PATCH: GET $g->{status} "
                . show($j) . ", expected generation $gen or "
                . ($gen + 1);
        }

    } else {
        push @problems, "PATCH: $p->{status} "
            . ($p->{error} // $p->{body});
    }

    return $sent;
}

my $t0 = now();
my $end = $t0 + $DURATION;
my $next_sample = $t0;
my $next_aim = $t0 + $AIM_EVERY / 2;
my ($stopped, $marked);

while (now() < $end) {
    my $aim = now() >= $next_aim;
    $next_aim += $AIM_EVERY if $aim;
    my $sent = flip($aim);

    check_state('after a flip');

    if (now() >= $next_sample) {
        $next_sample += $SAMPLE;
        my $m = api('GET', '/metrics');
        if ($m->{status} == 200) {
            my $prom = TSProm::parse($m->{body});
            my %c;
            for my $s (TSProm::samples($prom, 'traffic_shift_probes_total')) {
                $c{$s->{labels}{server}} += $s->{value};
            }
            push @samples, [now(), \%c];
            push @problems, "metrics: @{$prom->{errors}}[0 .. 2]"
                if @{$prom->{errors}};
        } elsif (hung($m) || $m->{status} != 599) {
            push @problems, "GET /metrics: $m->{status}";
        }
        my $h = api('GET', '/health/app_blue');
        if ($h->{status} == 200) {
            my ($s) = grep { $_->{address} eq $BLUE2 }
                @{$h->{json}{servers}};
            $marked //= now() if $stopped && $s->{state} eq 'down';
        } elsif (hung($h) || $h->{status} != 599) {
            push @problems, "GET /health/app_blue: $h->{status}";
        }
    }

    # half way: a backend stops
    if (!$stopped && now() > $t0 + $DURATION / 2) {
        ok($lone->stop, 'blue2 stopped');
        $stopped = now();
    }

    last if @problems > 20 || @slow > 20;
    my $wait = $sent + $STEP - now();
    Time::HiRes::sleep($wait) if $wait > 0;
}
my $t1 = now();

my ($kills) = TSStress::finish(5, $killer);
my @kills = split /\n/, $kills;
my $killed = @kills + ($n{aimed_killed} // 0);
my @outs = TSStress::finish(15, @clients);

ok($t->wait_for(sub { $t->worker_count == 2 }, timeout => 5,
                what => 'workers respawned'), 'two workers again');

# the API

is_deeply(\@slow, [], "every API call answered within ${TIMEOUT}s");
is_deeply(\@problems, [], 'every answer consistent with the changes made');
cmp_ok(scalar @kills, '>=', int($DURATION / $KILL_EVERY) - 1,
       scalar(@kills) . ' workers killed');
cmp_ok($n{accepted} // 0, '>', $DURATION / $STEP / 10,
       ($n{accepted} // 0) . ' changes accepted');
cmp_ok($n{aimed_lost} // 0, '>', 0,
       sprintf('%d of %d changes lost with the worker killed while '
               . 'serving them (%d applied)', $n{aimed_lost} // 0,
               $n{aimed} // 0, $n{aimed_applied} // 0));

# no lock left: a change now is applied and saved at once

my $to = $active eq 'blue' ? 'green' : 'blue';
$r = api('PATCH', '/upstreams/app', json => { active => $to },
         headers => { 'If-Match' => "\"$gen\"" });
is($r->{status}, 200, 'a change after the kills: 200');
is($r->{json}{generation}, $gen + 1, 'its generation');
ok($r->{json}{persisted}, 'and it was saved');
$gen++;
$active = $to;
is($gen, $first_gen + ($n{accepted} // 0) + ($n{in_doubt_applied} // 0) + 1,
   'generation: one per change applied');

my $saved = eval { $JSON->decode($t->read_file('state.json')) } // {};
is($saved->{upstreams}{app}{generation}, $gen, 'state file: generation');
is_deeply($saved->{upstreams}{app}{weights}, weights_of($active),
          'state file: weights');

# the requests

my @rec = TSStress::records(@outs);
my $s = TSStress::summary(@rec);
cmp_ok($s->{total}, '>', 0, "requests: $s->{total}");
is_deeply($s->{status}, { 200 => $s->{total} - $s->{failed} },
          'every answer 200');
is($s->{mismatch}, 0, 'every answer from a backend of the pool named');
cmp_ok($s->{failed}, '<=', $killed * @clients,
       "$s->{failed} requests lost with their worker, at most one per "
       . 'client per kill');
my ($bad, $strict) = TSStress::check_flips('blue', \@flips, @rec);
is(scalar @$bad, 0, 'no answer from a pool a flip had replaced');
diag(join "\n", map { TSStress::show($_) . " allowed $_->{allowed} "
                      . "(states $_->{states})" } @{$bad}[0 .. 9])
    if @$bad;

# the probes: every server's counter grew at least every PROBE_GAP

my %gap;
for my $srv (@SERVERS) {
    my ($last, $prev) = ($t0, undef);
    for my $smp (@samples) {
        my ($when, $c) = @$smp;
        my $v = $c->{$srv} // 0;
        if (defined $prev && $v > $prev) {
            $gap{$srv} = $when - $last if $when - $last > ($gap{$srv} // 0);
            $last = $when;
        }
        $prev = $v;
    }
    $gap{$srv} = $t1 - $last if $t1 - $last > ($gap{$srv} // 0);
}
cmp_ok(scalar @samples, '>', $DURATION / $SAMPLE / 2,
       scalar(@samples) . ' reads of /metrics');
is_deeply([grep { $gap{$_} > $PROBE_GAP } @SERVERS], [],
          "every server probed at least every ${PROBE_GAP}s")
    or diag(explain(\%gap));

ok($marked, 'the stopped backend was marked down');
ok($marked && $marked - $stopped < 3,
   sprintf('within 3 s (%.2f s)', ($marked // 0) - ($stopped // 0)));

my @module_log = grep { /\[(?:error|warn)\].*traffic_shift/
                        && !/server \Q$BLUE2\E in upstream "app_blue" is down/ }
                 split /\n/, $t->error_log;
is_deeply(\@module_log, [],
          'no error or warning from the module but blue2 marked down');

my $locked = () = $t->error_log =~ /was locked by/g;
my @pt = sort { $a <=> $b } @patch_time;
note(sprintf('PATCH with a state file: %.2f ms median, %.2f ms max; '
    . 'busy %.0f%% of the time', 1000 * $pt[@pt / 2], 1000 * $pt[-1],
    eval { my $sum = 0; $sum += $_ for @pt; 100 * $sum / ($t1 - $t0) }));
note(sprintf('%.1f s: %d kills (%d at random, %d of the worker serving '
    . 'a change; %d with the zone locked), %d changes accepted, %d lost '
    . 'with their worker (%d of them applied), %d GETs, %d API calls lost '
    . 'and retried; %d requests, %d lost, %d checked exactly; longest probe '
    . 'gap %.2f s; blue2 down %.2f s after its stop',
    $t1 - $t0, $killed, scalar @kills, $n{aimed_killed} // 0, $locked,
    $n{accepted} // 0, $n{in_doubt} // 0,
    $n{in_doubt_applied} // 0, $n{get} // 0, $n{lost} // 0, $s->{total},
    $s->{failed}, $strict, (sort { $b <=> $a } values %gap)[0],
    ($marked // 0) - ($stopped // 0)));

done_testing();
