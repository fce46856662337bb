#!/usr/bin/perl

# Admin API with two workers: once a change is answered, every request
# that starts after it, in every worker, uses the new weights (50 flips,
# 200 requests on fresh connections after each); two writers racing with
# the same If-Match get one 200 and one 412.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Select;
use IO::Socket::INET;
use TSTest;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 blue2 green1 green2);

$t->write_config(<<'EOF');
http {
    upstream app_blue  { server 127.0.0.1:%%PORT_blue1%%;
                         server 127.0.0.1:%%PORT_blue2%%; }
    upstream app_green { server 127.0.0.1:%%PORT_green1%%;
                         server 127.0.0.1:%%PORT_green2%%; }

    traffic_shift app {
        pool blue  app_blue  weight=100;
        pool green app_green;
    }

    server {
        # reuseport: the kernel spreads connections over both workers
        listen 127.0.0.1:%%PORT_main%% reuseport;
        add_header X-Pool $traffic_shift_pool always;
        add_header X-Worker $pid always;
        location / { proxy_pass http://app; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%% reuseport;
        add_header X-Worker $pid always;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
$t->start;

sub api { my ($m, $p, %o) = @_; $t->http($m, $p, port => 'api', %o) }

my (%workers, %api_workers, $bad, $requests);
my $gen = 1;

for my $flip (1 .. 50) {
    my $pool = $flip % 2 ? 'green' : 'blue';
    my $r = api('PATCH', '/traffic/upstreams/app',
                json => { active => $pool });
    if ($r->{status} != 200 || $r->{json}{generation} != ++$gen) {
        fail("flip $flip to $pool: status $r->{status}");
        last;
    }
    $api_workers{$r->{headers}{'x-worker'}}++;

    my %seen;
    for (1 .. 200) {
        my $q = $t->get('/', quiet => 1);
        $requests++;
        $workers{$q->{headers}{'x-worker'} // 'none'}++;
        my $p = $q->{headers}{'x-pool'} // 'none';
        my $b = $q->{headers}{'x-backend'} // 'none';
        $seen{"$p/$b"}++;
        $bad++ if $q->{status} != 200 || $p ne $pool || $b !~ /^$pool\d$/;
    }
    if ($bad) {
        fail("flip $flip to $pool: a request after the answer went "
            . "elsewhere: " . join(', ', map { "$_=$seen{$_}" } sort keys
                                   %seen));
        last;
    }
}

is($bad // 0, 0, "50 flips, $requests requests after them: every one "
    . 'went to the pool of the last answer');
is(scalar(grep { $_ ne 'none' } keys %workers), 2,
    'both workers served the requests: '
    . join(', ', map { "$_=$workers{$_}" } sort keys %workers));
note('flips answered by workers: '
    . join(', ', map { "$_=$api_workers{$_}" } sort keys %api_workers));
is(api('GET', '/traffic/upstreams/app')->{json}{generation}, 51,
    'generation moved by one per flip');

# two writers with the same If-Match, on two connections at once

sub race {
    my ($gen) = @_;
    my $body = '{"active":"green"}';
    my $req = "PATCH /traffic/upstreams/app HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/json\r\nIf-Match: \"$gen\"\r\n"
        . "Content-Length: " . length($body) . "\r\nConnection: close\r\n"
        . "\r\n";
    my @s = map {
        IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $t->port('api'), Proto => 'tcp')
            or die "connect: $!";
    } 1, 2;
    # both requests complete but their bodies, then both bodies
    syswrite($_, $req) for @s;
    syswrite($_, $body) for @s;
    return map {
        my $sock = $_;
        my $resp = '';
        my $sel = IO::Select->new($sock);
        while ($sel->can_read(10)) {
            last unless sysread($sock, $resp, 65536, length $resp);
        }
        [($resp =~ m{^HTTP/1\.1 (\d+)})[0] // 0,
         ($resp =~ /^X-Worker: (\d+)/mi)[0] // 0];
    } @s;
}

my ($ok, $cross) = (0, 0);
for my $round (1 .. 30) {
    my $gen = api('GET', '/traffic/upstreams/app')->{json}{generation};
    my @res = race($gen);
    my @status = sort map { $_->[0] } @res;
    $ok++ if "@status" eq '200 412';
    $cross++ if $res[0][1] != $res[1][1];
    my $now = api('GET', '/traffic/upstreams/app')->{json}{generation};
    if ("@status" ne '200 412' || $now != $gen + 1) {
        diag("round $round: statuses @status, generation $gen -> $now");
    }
    api('PATCH', '/traffic/upstreams/app', json => { active => 'blue' });
}
is($ok, 30, 'same If-Match twice at once: exactly one 200 and one 412, '
    . '30 times');
ok($cross > 0, "writers in different workers in $cross of 30 rounds");

done_testing();
