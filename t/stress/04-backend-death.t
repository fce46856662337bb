#!/usr/bin/perl

# A backend dies under load: the active pool has two servers, one of them
# in an nginx of its own that the test stops while clients send requests
# as fast as they can.  With "proxy_next_upstream error timeout" no client
# sees an error while the probes find out; the server is then marked down
# and no request is even tried on it any more; once it is back, probes
# bring it up and it serves again.  Run with and without a "zone" in the
# pool's upstream (per-worker peers, or shared ones).

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use Time::HiRes ();
use TSTest;
use TSStress qw(now dur short);

my $BEFORE = dur(3, 1);             # seconds of load before the stop
my $AFTER = dur(5, 2);              # after the mark (> fail_timeout)
my $BACK = dur(3, 1);               # after the server is back up
my $MARK_WITHIN = 5;                # interval 500ms x fails 2, and margin

my $t = TSTest->new(workers => 2, log_level => 'notice');
$t->backend($_) for qw(blue1 green1);
my $lone = TSTest::Backends->new(backends => ['blue2']);

my $conf = <<'EOF';
http {
    log_format requests '$msec $request_time "$upstream_addr" $status';

    upstream app_blue   { ZONE
                          server 127.0.0.1:%%PORT_blue1%%;
                          server 127.0.0.1:%%PORT_blue2%% fail_timeout=1s;
                          keepalive 8;
                          health_check uri=/healthz interval=500ms
                                       timeout=500ms fails=2 passes=1; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%; }

    traffic_shift app {
        pool blue   app_blue   weight=100;
        pool green  app_green;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        access_log %%TESTDIR%%/requests-VARIANT.log requests;
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
    }
}
EOF

my $BLUE2 = '127.0.0.1:' . $t->port('blue2');

# the state of blue2 in GET /health/app_blue, and the wall clock time
# when that answer arrived
sub blue2_state {
    my $r = $t->get('/traffic/health/app_blue', port => 'api', quiet => 1);
    my ($s) = grep { $_->{address} eq $BLUE2 }
        @{($r->{json} // {})->{servers} // []};
    return (($s // {})->{state} // "status $r->{status}", Time::HiRes::time());
}

sub wait_state {
    my ($want) = @_;
    my $at;
    $t->wait_for(sub {
        my ($st, $when) = blue2_state();
        $at = $when if $st eq $want;
        return $at;
    }, timeout => $MARK_WITHIN, interval => 0.02, what => "blue2 $want");
    return $at;
}

for my $variant (['without zone', ''], ['with zone', 'zone app_blue 64k;']) {
    my ($name, $zone) = @{$variant};
    (my $tag = $name) =~ s/\W+/-/g;

    (my $c = $conf) =~ s/ZONE/$zone/;
    $c =~ s/VARIANT/$tag/;
    $t->write_config($c);
    $lone->start;
    $t->start;

    my ($st) = blue2_state();
    ok($st eq 'up' || $st eq 'checking', "$name: blue2 $st at start");

    my @clients = map {
        TSStress::client($t->testdir, "$tag-client$_", port => $t->port('main'),
                         per_conn => $_ == 1 ? 1 : 20)
    } 1 .. 2;

    Time::HiRes::sleep($BEFORE);

    my $stop = Time::HiRes::time();
    my $stop_mono = now();
    ok($lone->stop, "$name: blue2 stopped");

    my $down = wait_state('down');
    ok($down, sprintf("$name: blue2 marked down, %.2f s after its stop",
                      ($down // $stop) - $stop));
    my $down_mono = now();

    Time::HiRes::sleep($AFTER);

    my $restart = Time::HiRes::time();
    ok($lone->start, "$name: blue2 started again");
    my $up = wait_state('up');
    ok($up, sprintf("$name: blue2 up again, %.2f s after its start",
                    ($up // $restart) - $restart));
    my $up_mono = now();

    Time::HiRes::sleep($BACK);

    my @rec = TSStress::records(TSStress::finish(15, @clients));
    my $s = TSStress::summary(@rec);

    cmp_ok($s->{total}, '>', 100, "$name: requests: $s->{total}");
    is($s->{failed}, 0, "$name: no failed request");
    is_deeply($s->{status}, { 200 => $s->{total} - $s->{failed} },
              "$name: every answer 200");
    is_deeply([sort keys %{$s->{pool}}], ['blue'], "$name: all to blue");
    is($s->{mismatch}, 0, "$name: every answer from a backend of blue");
    diag('first problems: ' . join("\n", map { TSStress::show($_) }
                                         @{$s->{bad}}[0 .. 4]))
        if @{$s->{bad}};

    my %phase = (before => 0, dying => 0, down => 0, back => 0);
    my %blue2 = %phase;
    for my $r (@rec) {
        my $p = $r->{start} < $stop_mono ? 'before'
              : $r->{start} < $down_mono ? 'dying'
              : $r->{start} < $up_mono ? 'down' : 'back';
        $phase{$p}++;
        $blue2{$p}++ if $r->{backend} eq 'blue2';
    }
    cmp_ok($phase{dying}, '>', 0,
           "$name: $phase{dying} requests while blue2 was dying");
    cmp_ok($blue2{before}, '>', 0,
           "$name: blue2 served $blue2{before} requests before its stop");
    cmp_ok($blue2{back}, '>', 0,
           "$name: blue2 served $blue2{back} requests once up again");

    # nginx's access log: requests that started after the mark was seen
    # and before blue2 came back never tried blue2
    my ($tried, $checked) = (0, 0);
    for my $line (split /\n/, $t->read_file("requests-$tag.log") // '') {
        my ($msec, $rt, $addrs) = $line =~ /^(\S+) (\S+) "([^"]*)"/ or next;
        my $start = $msec - $rt;
        next unless $down && $start > $down + 0.002
                    && $msec < $restart;
        $checked++;
        $tried++ if index($addrs, $BLUE2) >= 0;
    }
    # nginx tried blue2 and went on to blue1 for a few requests, before
    # its own max_fails and then the probes took blue2 out
    my $next = grep { /"\Q$BLUE2\E, / } split /\n/,
        $t->read_file("requests-$tag.log") // '';
    cmp_ok($next, '>', 0,
           "$name: $next requests passed from blue2 to the next server");

    cmp_ok($checked, '>', 0,
           "$name: $checked requests logged while blue2 was marked down");
    is($tried, 0, "$name: none of them tried blue2");

    note(sprintf('%s: %d requests (%d while blue2 was dying, %d while it '
        . 'was down), marked down %.2f s after its stop, up %.2f s after '
        . 'its start', $name, $s->{total}, $phase{dying}, $phase{down},
        ($down // $stop) - $stop, ($up // $restart) - $restart));

    $t->stop;
    $lone->stop;
}

done_testing();
