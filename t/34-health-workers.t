#!/usr/bin/perl

# One prober per server across workers: with 4 workers each backend sees
# one probe per interval (10 +/- 1 over 10 intervals), and still does after
# the worker holding the lease is killed with SIGKILL.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;

my $INTERVAL = 0.5;
my $WINDOW = 10 * $INTERVAL;

my $t = TSTest->new(workers => 4);
my $b = TSTest::Backends->new(backends => ['b1', 'b2']);
$b->start;

$t->write_config(<<'EOF');
http {
    upstream app {
        server 127.0.0.1:%%PORT_b1%%;
        server 127.0.0.1:%%PORT_b2%%;
        health_check uri=/healthz interval=500ms timeout=100ms;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }
}
EOF
$t->start;

# the master reports the killed worker, and may have to free the zone's
# mutex if the worker died holding it
$t->allow_log(qr/exited on signal 9/);
$t->allow_log(qr/shared memory zone .* was locked by/);

is($t->worker_count, 4, '4 workers');

ok($t->wait_for(sub { $b->backend_hits('b1', qr{^/healthz$}) >= 1
                      && $b->backend_hits('b2', qr{^/healthz$}) >= 1 },
                timeout => 5, what => 'first probes'), 'probing');

# probes of a backend logged in [from, from + WINDOW); notes the longest
# gap between probes, counting from the last one before the window
sub window {
    my ($name, $from) = @_;
    my $wait = $from + $WINDOW + 0.3 - time;
    sleep $wait if $wait > 0;
    my @all = map { $_->{time} } grep { $_->{uri} eq '/healthz' }
        $b->backend_log($name);
    my @t = grep { $_ >= $from && $_ < $from + $WINDOW } @all;
    my @before = grep { $_ < $from } @all;
    my @g = ((@before ? ($before[-1]) : ()), @t);
    my $gap = 0;
    for my $i (1 .. $#g) {
        $gap = $g[$i] - $g[$i - 1] if $g[$i] - $g[$i - 1] > $gap;
    }
    note(sprintf('%s: %d probes, longest gap %.3fs', $name, scalar @t, $gap));
    return scalar @t;
}


# the pid of the worker that last took the lease of a server
sub owner {
    my ($port) = @_;
    my $owner;
    for my $line (split /\n/, $t->error_log) {
        $owner = $1 if $line =~
            /\[info\] (\d+)#\d+: traffic_shift: this worker now checks the health of server 127\.0\.0\.1:$port in upstream "app"/;
    }
    return $owner;
}

my $from = time;
my %n = map { $_ => window($_, $from) } qw(b1 b2);

for my $name (qw(b1 b2)) {
    ok($n{$name} >= 9 && $n{$name} <= 11,
       "$name: $n{$name} probes in 10 intervals with 4 workers");
}

# kill the worker holding b1's lease

my $port = $t->port('b1');
my $victim = owner($port);
ok($victim, "b1 probed by worker " . ($victim // '?'));
ok((grep { $_ == ($victim // 0) } $t->worker_pids), 'a current worker');

$from = time;
kill 'KILL', $victim if $victim;

ok($t->wait_for(sub { my $o = owner($port); $o && $o != $victim },
                timeout => 5, what => 'takeover'),
   'another worker took the lease over');

%n = map { $_ => window($_, $from) } qw(b1 b2);

for my $name (qw(b1 b2)) {
    ok($n{$name} >= 9 && $n{$name} <= 11,
       "$name: $n{$name} probes in 10 intervals after SIGKILL");
}

ok($t->wait_for(sub { $t->worker_count == 4 }, timeout => 5,
                what => 'worker respawned'), 'killed worker replaced');

unlike($t->error_log, qr/in upstream "app" (is down|failed)/,
       'no probe failed');

done_testing();
