#!/usr/bin/perl

# keepalive=on (the default): HTTP/1.1 probes on one connection per server,
# counted at the backend ($connection, $connection_requests); a connection
# the backend closes (keepalive_requests, keepalive_timeout while idle, or
# closed as the next probe is sent) is replaced without a failed probe;
# keepalive=off: HTTP/1.0, a connection per probe.  On reload, the old
# workers close their kept connections and exit, with no open socket left.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSProbe;

my $t = TSTest->new(workers => 2);
my $be = TSTest->new(module => 0, name => 'be');
$be->port($_) for qw(ka kreq ktime koff);

$be->write_config(<<'EOF');
http {
    log_format conn '$server_port $connection $connection_requests '
                    '"$request" $status';
    access_log %%TESTDIR%%/conn.log conn;
    server {
        listen 127.0.0.1:%%PORT_ka%%;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_kreq%%;
        keepalive_requests 3;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_ktime%%;
        keepalive_timeout 200ms;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_koff%%;
        location / { return 200 "ok\n"; }
    }
}
EOF
$be->start;

# closes a kept connection when the second request comes, unanswered
TSProbe::serve($t, 'race', sub {
    my ($req, $n) = @_;
    return if $n > 1;
    return (["HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"], 0);
});

$t->write_config(<<'EOF');
http {
    upstream ka {
        server 127.0.0.1:%%PORT_ka%%;
        health_check uri=/ka interval=100ms timeout=500ms;
    }
    upstream kreq {
        server 127.0.0.1:%%PORT_kreq%%;
        health_check uri=/kreq interval=100ms;
    }
    upstream ktime {
        server 127.0.0.1:%%PORT_ktime%%;
        health_check uri=/ktime interval=500ms;
    }
    upstream koff {
        server 127.0.0.1:%%PORT_koff%%;
        health_check uri=/koff interval=100ms keepalive=off;
    }
    upstream race {
        server 127.0.0.1:%%PORT_race%%;
        health_check uri=/race interval=150ms;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /traffic/ { traffic_shift_api; }
    }
}
EOF
$t->start;

sub server {
    my ($ups) = @_;
    my $r = $t->get("/traffic/health/$ups");
    return (($r->{json} && $r->{json}{servers}) || [])->[0] // {};
}

# uri => [ [connection, requests on it, protocol], ... ]
sub seen {
    my %s;
    for my $line (split /\n/, $be->read_file('conn.log') // '') {
        my ($conn, $n, $uri, $proto) =
            $line =~ /^\d+ (\d+) (\d+) "GET (\S+) (HTTP\/1\.[01])"/ or next;
        push @{$s{$uri}}, [$conn, $n, $proto];
    }
    return \%s;
}

sub conns {
    my ($list) = @_;
    my %c = map { $_->[0] => 1 } @{$list // []};
    return scalar keys %c;
}

ok($t->wait_for(sub {
    my $s = seen();
    @{$s->{'/ka'} // []} >= 10 && @{$s->{'/kreq'} // []} >= 9
        && @{$s->{'/ktime'} // []} >= 4 && @{$s->{'/koff'} // []} >= 5
        && TSProbe::requests($t, 'race') >= 6
}, timeout => 15, what => 'probes'), 'probes seen at the backends');

my $s = seen();

my @ka = @{$s->{'/ka'}};
is(conns(\@ka), 1, 'keepalive: one connection for ' . @ka . ' probes');
is_deeply([map { $_->[1] } @ka], [1 .. @ka],
          'keepalive: requests 1, 2, 3... on it');
is($ka[0][2], 'HTTP/1.1', 'keepalive: HTTP/1.1');

my @kreq = @{$s->{'/kreq'}};
ok(conns(\@kreq) >= 3, 'keepalive_requests 3: a new connection every '
   . 'third probe (' . conns(\@kreq) . ' for ' . @kreq . ')');
ok(!grep({ $_->[1] > 3 } @kreq), 'never more than 3 requests on one');

my @ktime = @{$s->{'/ktime'}};
is(conns(\@ktime), scalar @ktime,
   'closed by the backend while idle: each probe on a new connection');

my @koff = @{$s->{'/koff'}};
is(conns(\@koff), scalar @koff, 'keepalive=off: a connection per probe');
is($koff[0][2], 'HTTP/1.0', 'keepalive=off: HTTP/1.0');

my $race = TSProbe::accepts($t, 'race');
ok($race >= 3, "closed as the next probe is sent: $race connections");

for my $ups (qw(ka kreq ktime koff race)) {
    my $srv = server($ups);
    is($srv->{state}, 'up', "$ups: up");
    is($srv->{probes}{fail} // -1, 0, "$ups: no probe failed")
        or diag(explain $srv);
}

# the lease moves: the worker that held it, stopped for longer than the
# lease, closes its kept connection once it runs again and sees another
# worker probing

# established connections from the proxy to a port, from /proc/net/tcp
sub established {
    my ($port) = @_;
    my $n = 0;
    for my $line (split /\n/, $t->read_file('/proc/net/tcp') // '') {
        my ($rem, $st) = $line =~ /^\s*\d+: \S+ [0-9A-F]+:([0-9A-F]+) (\S+)/
            or next;
        $n++ if hex($rem) == $port && $st eq '01';
    }
    return $n;
}

my $kport = $t->port('ka');
is(established($kport), 1, 'one kept connection to the ka backend');

my ($owner) = $t->error_log =~
    /(\d+)#\d+: traffic_shift: this worker now checks the health of server \S+ in upstream "ka"/;
ok($owner, "the worker probing ka: $owner");

if ($owner) {
    kill 'STOP', $owner;
    my $moved = $t->wait_for(sub {
        $t->error_log =~ /(\d+)#\d+: traffic_shift: this worker now checks the health of server \S+ in upstream "ka"/
            && grep { $_ != $owner }
                   $t->error_log =~ /(\d+)#\d+: traffic_shift: this worker now checks the health of server \S+ in upstream "ka"/g
    }, timeout => 10, what => 'lease moved');
    my $two = $t->wait_for(sub { established($kport) == 2 },
                           timeout => 5, what => 'two connections');
    kill 'CONT', $owner;
    ok($moved, 'the lease moved to the other worker');
    ok($two, 'the new owner opened its own connection');
    ok($t->wait_for(sub { established($kport) == 1 },
                    timeout => 10, what => 'one connection again'),
       'the old owner closed its kept connection: one connection left');
    my @owners = $t->error_log =~ /(\d+)#\d+: traffic_shift: this worker now checks the health of server \S+ in upstream "ka"/g;
    is($owners[-1], (grep { $_ != $owner } @owners)[-1],
       'the lease stayed with the new owner');
}

# reload: the old workers close their kept connections and exit

my @old = $t->worker_pids;
ok($t->reload, 'reloaded');
ok($t->wait_for(sub { !grep { kill 0, $_ } @old },
                timeout => 10, what => 'old workers gone'),
   'old workers exited');

my $before = @{seen()->{'/ka'}};
ok($t->wait_for(sub { @{seen()->{'/ka'}} >= $before + 5 },
                timeout => 10, what => 'probes after reload'),
   'probes go on after reload');

my @after = @{seen()->{'/ka'}}[$before .. $before + 4];
ok(conns(\@after) <= 2, 'after reload: kept again (' . conns(\@after)
   . ' connection(s) for 5 probes)');

unlike($t->error_log, qr/open socket/, 'no open socket left');
is(server('ka')->{probes}{fail} // -1, 0, 'ka: still no probe failed');

done_testing();
