#!/usr/bin/perl

# Reload while probing: no request fails, health is kept (a server marked
# down stays down and gets no request), old workers exit at once even with
# a probe in flight, leaving no open socket, and new workers take the
# probes over.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use POSIX ();
use Time::HiRes qw(time sleep);
use TSTest;

my $t = TSTest->new(workers => 2);
my $b = TSTest::Backends->new(backends => ['b1', 'b2', 'b3' => { slow => 2 }]);
$b->start;

# b3's probes take 2 s: one is always in flight
my $conf = <<'EOF';
http {
    upstream app {
        server 127.0.0.1:%%PORT_b1%%;
        server 127.0.0.1:%%PORT_b2%%;
        health_check uri=/healthz interval=200ms timeout=1s fails=1 passes=3;
    }
    upstream slowcheck {
        server 127.0.0.1:%%PORT_b3%%;
        health_check uri=/slow interval=200ms timeout=3s;
    }
    EXTRA
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }
}
EOF

(my $c1 = $conf) =~ s/EXTRA//;
(my $c2 = $conf) =~ s/EXTRA/upstream extra { server 127.0.0.1:%%PORT_b1%%;
                                    health_check type=tcp; }/;

$t->write_config($c1);
$t->start;

my $b2 = '127.0.0.1:' . $t->port('b2');

my $mark = $t->log_mark;
$b->set_backend('b2', healthy => 0);
ok($t->wait_for(sub { $t->error_log(since => $mark)
                          =~ /server \Q$b2\E in upstream "app" is down/ },
                timeout => 5, what => 'b2 down'), 'b2 marked down');

ok($t->wait_for(sub { $b->backend_hits('b3', qr{^/slow$}) >= 1 },
                timeout => 5, what => 'slow probes'), 'slow probes answered');

my $hits_b2 = $b->backend_hits('b2', qr{^/(?!healthz)});

# load in a child process while nginx reloads

my $stop = $t->testdir . '/stop-load';
my $result = $t->testdir . '/load-result';

my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    my (%status, $n);
    while (!-e $stop && $n++ < 100000) {
        my $r = $t->get('/', quiet => 1, timeout => 5);
        my $key = $r->{status} == 200 ? $r->{headers}{'x-backend'} // '?'
                                       : $r->{status};
        $status{$key}++;
    }
    open(my $fh, '>', $result) or POSIX::_exit(1);
    print $fh join(' ', map { "$_=$status{$_}" } sort keys %status), "\n";
    close $fh;
    POSIX::_exit(0);
}

my @took;
for my $i (1 .. 4) {
    # a reload while a 2 s probe is in flight
    sleep 0.3;
    my $t0 = time;
    ok($t->reload($i % 2 ? $c2 : $c1), "reload $i");
    push @took, time - $t0;
}

open(my $fh, '>', $stop) or die;
close $fh;
waitpid($pid, 0);

my $load = $t->read_file('load-result') // '';
chomp $load;
my %status = map { split /=/ } split ' ', $load;
note("requests during reloads: $load");

ok(($status{b1} // 0) > 0, "requests served during the reloads ($load)");
is_deeply([sort grep { $_ ne 'b1' } keys %status], [],
          'every request answered 200 by b1: no 502, nothing to b2');

for my $i (0 .. $#took) {
    ok($took[$i] < 1.5,
       sprintf('reload %d: old workers gone in %.2fs, before their 2 s '
               . 'probe ends', $i + 1, $took[$i]));
}

# health kept: b2 is still down, no worker sent it a request

my $log = $t->error_log(since => $mark);
unlike($log, qr/server \Q$b2\E in upstream "app" is up/, 'b2 never came up');
is($b->backend_hits('b2', qr{^/(?!healthz)}), $hits_b2,
   'no request reached b2 across the reloads');
is_deeply($t->count_backends(n => 20), { b1 => 20 },
          'after the reloads: b1 only');

unlike($t->error_log, qr/open socket/, 'no open socket left by old workers');

# new workers probe: the leases of the old ones were released

my $probes = $b->backend_hits('b2', qr{^/healthz$});
ok($t->wait_for(sub { $b->backend_hits('b2', qr{^/healthz$}) >= $probes + 3 },
                timeout => 5, what => 'probes after reload'),
   'probes go on after the reloads');

my $slow = $b->backend_hits('b3', qr{^/slow$});
ok($t->wait_for(sub { $b->backend_hits('b3', qr{^/slow$}) > $slow },
                timeout => 6, what => 'slow probes after reload'),
   'in-flight probes taken over by the new workers');

# healthy again, across one more reload

$mark = $t->log_mark;
$b->set_backend('b2', healthy => 1);
ok($t->reload($c1), 'reload while b2 recovers');
ok($t->wait_for(sub { $t->error_log(since => $mark)
                          =~ /server \Q$b2\E in upstream "app" is up after 3/ },
                timeout => 5, what => 'b2 up'), 'b2 up after 3 passes');

my $c = $t->count_backends(n => 20);
ok(($c->{b2} // 0) > 0, 'b2 serves again');

done_testing();
