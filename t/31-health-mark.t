#!/usr/bin/perl

# A server that fails its probes (unhealthy answer, then stopped) is marked
# down after "fails" probes, within interval x fails + timeout, gets no
# request from any worker after the mark, and comes back after "passes"
# probes; with and without an upstream zone.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time);
use TSTest;

my $INTERVAL = 0.5;
my $TIMEOUT = 0.3;
my $FAILS = 2;
my $PASSES = 2;

# polling the error log and scheduling on a busy machine
my $SLACK = 0.3;

my $t = TSTest->new(workers => 2);
my $b = TSTest::Backends->new(backends => ['b1', 'b2']);
$b->start;

my $hc = "health_check uri=/healthz interval=${\ ($INTERVAL * 1000)}ms "
    . "timeout=${\ ($TIMEOUT * 1000)}ms fails=$FAILS passes=$PASSES;";

$t->write_config(<<"EOF");
http {
    upstream app {
        server 127.0.0.1:%%PORT_b1%%;
        server 127.0.0.1:%%PORT_b2%%;
        $hc
    }
    upstream app_zone {
        zone app_zone 64k;
        server 127.0.0.1:%%PORT_b1%%;
        server 127.0.0.1:%%PORT_b2%%;
        $hc
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
        location /z/ { proxy_pass http://app_zone/; }
    }
}
EOF
$t->start;

my $b2 = '127.0.0.1:' . $t->port('b2');
my @ups = ('app', 'app_zone');
my %path = (app => '/', app_zone => '/z/');

ok($t->wait_for(sub { $b->backend_hits('b2', qr{^/healthz$}) >= 4 },
                timeout => 5, what => 'first probes'),
   'probes reach the backends');

sub both_used {
    my ($what) = @_;
    for my $u (@ups) {
        my $c = $t->count_backends(n => 20, path => $path{$u});
        ok(($c->{b1} // 0) > 0 && ($c->{b2} // 0) > 0
           && ($c->{b1} // 0) + ($c->{b2} // 0) == 20,
           "$u: both servers used $what")
            or diag(explain($c));
    }
}

sub requests_to_b2 {
    return $b->backend_hits('b2', qr{^/(?!healthz$)});
}

# waits for "$state" lines of b2 in both upstreams; returns the time taken
sub wait_mark {
    my ($mark, $t0, $state, $n) = @_;
    my %seen;
    $t->wait_for(sub {
        my $log = $t->error_log(since => $mark);
        for my $u (@ups) {
            next if $seen{$u};
            $seen{$u} = time - $t0
                if $log =~ /server \Q$b2\E in upstream "$u" is $state after $n /;
        }
        return keys %seen == @ups;
    }, timeout => 10, what => "b2 $state");
    return \%seen;
}

sub failed_probes {
    my ($mark, $u, $reason) = @_;
    my $log = $t->error_log(since => $mark);
    my ($before) = $log =~ /^(.*?server \Q$b2\E in upstream "$u" is down)/s;
    return -1 unless defined $before;
    my @f = $before =~ /health check of server \Q$b2\E in upstream "$u" failed: \Q$reason\E/g;
    return scalar @f;
}

both_used('at start');

# 1. unhealthy answers: down after $FAILS probes, no request after the mark

my $bound = $INTERVAL * $FAILS + $TIMEOUT;

my $mark = $t->log_mark;
my $t0 = time;
$b->set_backend('b2', healthy => 0);

my $took = wait_mark($mark, $t0, 'down', $FAILS);

for my $u (@ups) {
    ok(defined $took->{$u}, "$u: b2 marked down (unhealthy)");
    ok(($took->{$u} // 99) <= $bound + $SLACK,
       sprintf("$u: within interval x fails + timeout (%.2fs <= %.2fs)",
               $took->{$u} // 99, $bound));
    is(failed_probes($mark, $u, 'status 503'), $FAILS,
       "$u: after $FAILS failed probes, reason \"status 503\"");
    like($t->error_log(since => $mark),
         qr/\[warn\] .*server \Q$b2\E in upstream "$u" is down after $FAILS failed health check\(s\), last: status 503/,
         "$u: state change logged at warn");
}

my $before = requests_to_b2();
for my $u (@ups) {
    my $c = $t->count_backends(n => 40, path => $path{$u});
    is_deeply($c, { b1 => 40 }, "$u: every request to b1 after the mark");
}
is(requests_to_b2(), $before, 'no request reached b2 after the mark');

# 2. healthy again: up after $PASSES probes

$mark = $t->log_mark;
$t0 = time;
$b->set_backend('b2', healthy => 1);

$took = wait_mark($mark, $t0, 'up', $PASSES);

for my $u (@ups) {
    ok(defined $took->{$u}, "$u: b2 back up");
    ok(($took->{$u} // 99) <= $INTERVAL * $PASSES + $TIMEOUT + $SLACK,
       sprintf("$u: within interval x passes + timeout (%.2fs)",
               $took->{$u} // 99));
    like($t->error_log(since => $mark),
         qr/\[notice\] .*server \Q$b2\E in upstream "$u" is up after $PASSES passed/,
         "$u: state change logged at notice");
}

both_used('after recovery');

# 3. stopped: connection refused

$mark = $t->log_mark;
ok($b->stop_backend('b2'), 'b2 stopped');
$t0 = time;

$took = wait_mark($mark, $t0, 'down', $FAILS);

for my $u (@ups) {
    ok(defined $took->{$u}, "$u: stopped b2 marked down");
    ok(($took->{$u} // 99) <= $bound + $SLACK,
       sprintf("$u: within interval x fails + timeout (%.2fs <= %.2fs)",
               $took->{$u} // 99, $bound));
    is(failed_probes($mark, $u, 'connect refused'), $FAILS,
       "$u: after $FAILS probes refused");
}

my $mark2 = $t->log_mark;
for my $u (@ups) {
    my $c = $t->count_backends(n => 40, path => $path{$u});
    is_deeply($c, { b1 => 40 }, "$u: every request to b1, no error");
}
unlike($t->error_log(since => $mark2), qr/while connecting to upstream/,
       'no connection attempt to the stopped server');

# 4. started again

$mark = $t->log_mark;
ok($b->start_backend('b2'), 'b2 started');
$t0 = time;

$took = wait_mark($mark, $t0, 'up', $PASSES);
ok(defined $took->{$_}, "$_: restarted b2 back up") for @ups;

both_used('after restart');

done_testing();
