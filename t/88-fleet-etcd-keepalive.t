#!/usr/bin/perl

# Connections to etcd are kept between requests: a node with one worker
# holds its watch and one kept connection each for its node key and for
# its writes, instead of a new connection (a new TLS handshake with
# https://) for every lease keepalive and put, every second.  Each node
# reaches etcd through a TCP proxy that counts the connections
# (t/lib/TSDelay.pm, no delay).
#
#   node k: keepalive= by default (30s): over 5 s, no new connection;
#   node o: keepalive=0, every request on a connection of its own (as
#   before keepalive=): several per second;
#   node s: keepalive=600ms, under the node key's beat of 1 s: the kept
#   connection is closed idle between beats, the proxy sees it go.
#
# The proxy restarted on its port (every connection closed): node k's
# kept connection is closed at once, a PATCH answers 200.  The proxy cuts
# the connections it holds at their next byte (etcd closing a kept
# connection as a request comes): the request is sent again on a new
# connection, no failure is logged.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;
use TSDelay;

TSEtcd::require_etcd();

my %keepalive = (k => '', o => ' keepalive=0', s => ' keepalive=600ms');
my (%node, %proxy);

$node{k} = TSTest->new(name => 'keep_k', workers => 1, log_level => 'debug');
$node{k}->backend($_) for qw(blue1 green1);
my $etcd = TSEtcd->new($node{k});

for my $n (qw(k o s)) {
    $node{$n} //= TSTest->new(name => "keep_$n", workers => 1,
                              log_level => 'debug');
    $proxy{$n} = TSDelay->new($node{k}, name => "keep_proxy_$n",
                              to => $etcd->port);
    my $blue = $node{k}->port('blue1');
    my $green = $node{k}->port('green1');
    my $sync = $proxy{$n}->url . " node=$n timeout=2s$keepalive{$n}";
    $node{$n}->write_config(<<"CONF");
http {
    traffic_shift_zone shift 1m;
    traffic_shift_sync $sync;
    upstream u_blue  { server 127.0.0.1:$blue; }
    upstream u_green { server 127.0.0.1:$green; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_keep_${n}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
CONF
    $node{$n}->start;
}

sub api {
    my ($n, $method, $path, $json) = @_;
    return $node{$n}->http($method, "/traffic$path", port => "keep_${n}_api",
                           quiet => 1, timeout => 10,
                           $json ? (json => $json) : ());
}

sub patch {
    my ($n, $blue) = @_;
    return api($n, 'PATCH', '/upstreams/app',
               { weights => { blue => $blue, green => 100 - $blue } });
}

sub wait_for {
    my ($what, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if $what->();
        sleep 0.05;
    }
    return $what->();
}

# every node up: its watch and its key in etcd
for my $n (qw(k o s)) {
    ok(wait_for(sub {
        my $r = api($n, 'GET', '/fleet');
        $r->{status} == 200 && grep { $_->{node} eq $n }
            @{$r->{json}{nodes} // []};
    }, 10), "node $n is in the fleet");
}

# a 5 s window, counted at the proxies
my %before = map { $_ => $proxy{$_}->connections } qw(k o s);
my %least = map { $_ => 1e9 } qw(k o s);
my $end = time + 5;
while (time < $end) {
    for my $n (qw(k o s)) {
        my $open = $proxy{$n}->open_connections;
        $least{$n} = $open if $open < $least{$n};
    }
    sleep 0.02;
}
my %new = map { $_ => $proxy{$_}->connections - $before{$_} } qw(k o s);
diag(sprintf "connections to etcd over 5 s: %s",
     join '; ', map { "$_: $before{$_} before, $new{$_} new, "
                      . "$least{$_} open at least" } qw(k o s));

ok($new{k} <= 1, "kept connections: $new{k} new over 5 s (node k)");
ok($proxy{k}->connections <= 4,
   'node k opened ' . $proxy{k}->connections . ' connections in all');
ok($new{o} >= 3, "keepalive=0: $new{o} new over 5 s, one per request");
ok($least{k} >= 2, 'node k holds its watch and a kept connection');
is($least{s}, 1, 'keepalive=600ms: only the watch open between beats');
like($node{s}->error_log,
     qr/closing the kept connection, idle for 600ms/,
     'node s logs the idle close at debug level');
like($node{k}->error_log, qr/reusing the kept connection/,
     'node k logs the reuse at debug level');

# the proxy restarted: every connection closed under node k
my $mark = $node{k}->log_mark;
my $port = $proxy{k}->port;
$proxy{k}->stop;
$proxy{k} = TSDelay->new($node{k}, name => 'keep_proxy_k',
                         to => $etcd->port);
is($proxy{k}->port, $port, 'the proxy is back on its port');
# idle, the kept connection is closed at once; if a request was on it at
# that moment, that request is sent again on a new connection
ok(wait_for(sub {
    $node{k}->error_log(since => $mark)
        =~ /kept connection, etcd closed it|closed the kept connection, sending again/
}, 5), 'the kept connection closed by the proxy is noticed at once');

my $r = patch('k', 70);
is($r->{status}, 200, 'a PATCH after the restart answers 200');
ok(wait_for(sub { (($etcd->get('/traffic-shift/upstreams/app'))[0] // '')
                  =~ /"blue":70/ }, 5), 'etcd has it');

# cut: the next request on every connection open now meets a close
ok(wait_for(sub { $proxy{k}->open_connections >= 2 }, 5),
   'node k has its watch and a kept connection again');
$mark = $node{k}->log_mark;
my $was = $proxy{k}->connections;
$proxy{k}->cut;
ok(wait_for(sub {
    $node{k}->error_log(since => $mark)
        =~ /closed the kept connection, sending again on a new one/
}, 5), 'a request on a connection cut by the proxy is sent again');
ok(wait_for(sub { $node{k}->error_log(since => $mark)
                  =~ /reusing the kept connection/ }, 5),
   'the new connection is kept in turn');
unlike($node{k}->error_log(since => $mark),
       qr/\[(?:warn|error)\].*traffic_shift_sync/,
       'no failure logged: the callers saw one request');
diag('connections after the cut: ' . ($proxy{k}->connections - $was)
     . ' new');

$r = patch('k', 40);
is($r->{status}, 200, 'a PATCH after the cut answers 200');
$r = api('k', 'GET', '/upstreams/app');
is($r->{json}{weights}{blue}, 40, 'node k routes by it');

done_testing();
