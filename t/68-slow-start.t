#!/usr/bin/perl

# Slow start (outlier_detection slow_start=T): a server that becomes up
# (probe recovery, admin up, new in a reload) ramps its share from 10% to
# all of it over the window, as measured in request counts, and is full
# after it; round robin still chooses, with or without a zone and with
# keepalive; servers up before a start or a reload do not ramp.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time);
use TSTest;

my $WINDOW = 4;

my $b = TSTest::Backends->new(backends => ['b1', 'b2', 'b3']);
$b->start;

my $t = TSTest->new(workers => 2);

my $conf = <<'EOF';
http {
    upstream ss {
        server 127.0.0.1:%%PORT_b1%%;
        server 127.0.0.1:%%PORT_b2%%;
        %%EXTRA%%
        outlier_detection slow_start=4s;
        health_check uri=/healthz interval=200ms fails=1 passes=1;
    }
    upstream kz {
        zone kz 64k;
        server 127.0.0.1:%%PORT_b1%%;
        server 127.0.0.1:%%PORT_b2%%;
        keepalive 4;
        outlier_detection slow_start=4s;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /ss/ { proxy_pass http://ss/; }
        location /kz/ {
            proxy_pass http://kz/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF

(my $first = $conf) =~ s/%%EXTRA%%//;
$t->write_config($first);
$t->start;

sub addr { '127.0.0.1:' . $t->port($_[0]) }

sub server {
    my ($ups, $name) = @_;
    my $r = $t->get("/traffic/health/$ups");
    my ($s) = grep { $_->{address} eq addr($name) }
        @{($r->{json} // {})->{servers} // []};
    return $s // {};
}

sub share { server($_[0], $_[1])->{slow_start}{share_percent} // -1 }

# b2's part of the requests in batches while it ramps: each batch with
# the part expected from its share before and after (a share of s% of
# what it gets at full weight: s% of half the requests)
sub ramp {
    my ($ups, $path) = @_;
    my (@early, @late);
    my $deadline = time + $WINDOW + 5;
    while (time < $deadline) {
        my $s0 = share($ups, 'b2');
        last if $s0 >= 100;
        my $c = $t->count_backends(n => 20, path => $path);
        my $s1 = share($ups, 'b2');
        my $part = ($s0 < 55) ? \@early : \@late;
        push @$part, [$c->{b2} // 0, 20, ($s0 + $s1) / 400];
    }
    my $sum = sub {
        my ($l) = @_;
        my ($got, $n, $exp) = (0, 0, 0);
        for (@$l) { $got += $_->[0]; $n += $_->[1]; $exp += $_->[2] * $_->[1] }
        return ($n ? $got / $n : -1, $n ? $exp / $n : -1, $n);
    };
    return ([$sum->(\@early)], [$sum->(\@late)]);
}

# a ratio near the expected one: three standard deviations and a margin
sub near {
    my ($got, $exp, $n, $what) = @_;
    my $tol = 3 * sqrt($exp * (1 - $exp) / ($n || 1)) + 0.05;
    ok(abs($got - $exp) <= $tol,
       sprintf('%s: %.3f of the requests, %.3f expected (+-%.3f, %d '
               . 'requests)', $what, $got, $exp, $tol, $n));
}

# 1. servers up at the start do not ramp

is(server('ss', $_)->{slow_start}{ramping}, JSON::PP::false(),
   "start: $_ does not ramp") for qw(b1 b2);
is(share('ss', 'b2'), 100, 'start: full share');

# 2. back from a failed probe: the share grows over the window

$b->set_backend('b2', healthy => 0);
ok($t->wait_for(sub { server('ss', 'b2')->{state} eq 'down' },
                timeout => 5, what => 'b2 down'), 'b2 down by its probe');
$b->set_backend('b2', healthy => 1);
ok($t->wait_for(sub { server('ss', 'b2')->{state} eq 'up' },
                timeout => 5, what => 'b2 up'), 'b2 up again');
ok(server('ss', 'b2')->{slow_start}{ramping}, 'b2 ramps');
cmp_ok(share('ss', 'b2'), '<', 40, 'its share starts low');

my ($early, $late) = ramp('ss', '/ss/');
near(@$early, 'ss: first half of the window');
near(@$late, 'ss: second half of the window');
cmp_ok($early->[0], '<', $late->[0], 'ss: the share grows');
cmp_ok($early->[0], '<', 0.4, 'ss: b2 gets well under half at first');

ok($t->wait_for(sub { share('ss', 'b2') == 100 },
                timeout => $WINDOW + 2, what => 'end of the ramp'),
   'ss: full share after the window');
my $c = $t->count_backends(n => 100, path => '/ss/');
near(($c->{b2} // 0) / 100, 0.5, 100, 'ss: after the window, an even split');

# 3. with a zone and keepalive: admin down, then up, ramps too

my $r = $t->patch('/traffic/health/kz/servers/' . addr('b2'),
                  { down => JSON::PP::true() });
is($r->{status}, 200, 'kz: b2 drained') or diag(explain($r));
$r = $t->patch('/traffic/health/kz/servers/' . addr('b2'),
               { down => JSON::PP::false() });
is($r->{status}, 200, 'kz: b2 back');
ok(server('kz', 'b2')->{slow_start}{ramping}, 'kz: b2 ramps after admin up');

($early, $late) = ramp('kz', '/kz/');
near(@$early, 'kz: first half of the window');
cmp_ok($early->[0], '<', $late->[0], 'kz: the share grows');

# 4. a reload: servers that were up do not ramp again; a new one does

ok($t->wait_for(sub { share('kz', 'b2') == 100 && share('ss', 'b2') == 100 },
                timeout => $WINDOW + 2, what => 'end of the ramps'),
   'ramps over');
(my $second = $conf) =~ s/%%EXTRA%%/server 127.0.0.1:%%PORT_b3%%;/;
ok($t->reload($second), 'reload with a new server');
is(share('ss', $_), 100, "reload: $_ does not ramp again") for qw(b1 b2);
ok(server('ss', 'b3')->{slow_start}{ramping}, 'reload: the new server ramps');

done_testing();
