#!/usr/bin/perl

# A writer frozen or killed inside its write section: requests keep the
# last published state (never an older one, never a mix), the API keeps
# answering with it, and the next change repairs the record.  gdb stops
# the writer at the start of the publication, where the sequence is odd.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use IO::Socket::INET;
use POSIX ();

my $conf = <<'EOF';
http {
    upstream u_blue   { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green  { server 127.0.0.1:%%PORT_green1%%; }
    upstream u_canary { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app {
        pool blue   u_blue   weight=100;
        pool green  u_green;
        pool canary u_canary;
    }

    server {
        listen 127.0.0.1:%%PORT_main%% reuseport;
        add_header X-Pool $traffic_shift_pool always;
        add_header X-Worker $pid always;
        # a new connection to the backends for each request: a connection
        # kept alive (by default since nginx 1.29.7) may be the frozen
        # worker's
        location / { proxy_pass http://app; proxy_http_version 1.0; }
    }
    server {
        listen 127.0.0.1:%%PORT_api%% reuseport;
        add_header X-Worker $pid always;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF

my $gdb = `command -v gdb 2>/dev/null`;
chomp $gdb;
plan skip_all => 'gdb is not installed' unless $gdb;

my $t = TSTest->new(workers => 2, log_level => 'notice');
$t->backend($_) for qw(blue1 green1 canary1);
$t->write_config($conf);
$t->start;

# can this process trace nginx's workers at all?
my ($probe) = $t->worker_pids;
my $out = `'$gdb' -q -batch -p $probe -ex detach 2>&1`;
if ($? != 0 || $out =~ /ptrace: Operation not permitted/) {
    $t->stop;
    plan skip_all => 'gdb cannot attach to a worker here';
}

# kept-alive connections, each pinned to a worker
sub conn {
    IO::Socket::INET->new(PeerAddr => '127.0.0.1',
        PeerPort => $t->port($_[0]), Timeout => 10)
        or die "connect: $!";
}

sub send_req {
    my ($s, $m, $path, $body) = @_;
    my $req = "$m $path HTTP/1.1\r\nHost: x\r\n";
    $req .= "Content-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\n" if defined $body;
    print $s $req . "\r\n" . ($body // '');
}

sub read_resp {
    my ($s) = @_;
    my $head = '';
    while (my $l = <$s>) { last if $l eq "\r\n"; $head .= $l }
    my ($len) = $head =~ /Content-Length: (\d+)/i;
    my $b = '';
    read($s, $b, $len) if $len;
    my ($st) = $head =~ m{^HTTP/1.1 (\d+)};
    my ($w) = $head =~ /X-Worker: (\d+)/i;
    my ($p) = $head =~ /X-Pool: (\S+)/i;
    return { status => $st // 0, worker => $w // 0, pool => $p // '',
             body => $b };
}

sub req { my $s = shift; send_req($s, @_); return read_resp($s) }

# gdb stops a worker where a change is being published
sub freeze {
    my ($pid, $log) = @_;
    my $g = fork // die "fork: $!";
    if ($g == 0) {
        open STDOUT, '>', $t->testdir . "/$log";
        open STDERR, '>&', \*STDOUT;
        exec $gdb, '-q', '-batch', '-p', $pid,
            '-ex', 'break ngx_http_traffic_shift_zone_publish',
            '-ex', 'continue', '-ex', 'print rec->seq',
            '-ex', 'shell sleep 60'
            or POSIX::_exit(1);
    }
    $t->wait_for(sub { ($t->read_file($log) // '') =~ /Breakpoint 1 at/ },
        timeout => 20, what => 'gdb set its breakpoint');
    return $g;
}

sub stopped {
    my ($log) = @_;
    return $t->wait_for(sub { ($t->read_file($log) // '') =~ /\$1 = (\d+)/ },
        timeout => 20, what => 'the writer reached the breakpoint');
}

# 1. a writer frozen inside its section: other workers route by the last
#    answered change, not by the one before

my ($c, $cw, $d, $dw);
for (1 .. 100) {
    $c = conn('main');
    $cw = req($c, 'GET', '/')->{worker};
    $d = conn('api');
    $dw = req($d, 'GET', '/traffic/')->{worker};
    last if $cw && $dw && $cw != $dw;
}
isnt($cw, $dw, 'proxy and API connections pinned to different workers');

is(req($c, 'GET', '/')->{pool}, 'blue', 'blue before any change');
is(req($d, 'PATCH', '/traffic/upstreams/app', '{"active":"green"}')->{status},
    200, 'flip to green answered');
is(req($c, 'GET', '/')->{pool}, 'green', 'the other worker follows');

my $g = freeze($dw, 'gdb1.log');
send_req($d, 'PATCH', '/traffic/upstreams/app', '{"active":"canary"}');
ok(stopped('gdb1.log'), 'the flip to canary is stopped while publishing');
my ($seq) = ($t->read_file('gdb1.log') // '') =~ /\$1 = (\d+)/;
ok(defined $seq && $seq % 2 == 1, 'the sequence is odd meanwhile');

my $r = req($c, 'GET', '/');
is($r->{status}, 200, 'a request during the frozen write is answered');
is($r->{pool}, 'green', 'by the last answered state, not an older one');

kill 'KILL', $g;
waitpid $g, 0;
$r = read_resp($d);
is($r->{status}, 200, 'the flip to canary is answered once let go');
is(req($c, 'GET', '/')->{pool}, 'canary', 'and followed');

# 2. a writer killed inside its section: the master releases the mutex,
#    the published state stays whole and readable, the next change repairs

$t->allow_log(qr/exited on signal 9/);
$t->allow_log(qr/shared memory zone "traffic_shift" was locked by \d+/);

$g = freeze($dw, 'gdb2.log');
send_req($d, 'PATCH', '/traffic/upstreams/app',
    '{"weights":{"blue":50,"green":50}}');
ok(stopped('gdb2.log'), 'a 50/50 change is stopped while publishing');
kill 'KILL', $dw;
kill 'KILL', $g;
waitpid $g, 0;
$t->wait_for(sub { my @w = $t->worker_pids; @w == 2 && !grep { $_ == $dw } @w },
    what => 'the killed worker respawned');

my $before;
for my $i (1 .. 3) {
    $r = $t->get('/traffic/upstreams/app', port => 'api');
    is($r->{status}, 200, "GET $i after the kill answers 200");
    is_deeply($r->{json}{weights}, { blue => 0, green => 0, canary => 100 },
        "GET $i: the last published weights, whole");
    $before //= $r->{json}{generation};
}

my $c2 = $t->count_backends(n => 20, header => 'x-pool');
is_deeply($c2, { canary => 20 }, 'every worker routes by them');

$r = $t->patch('/traffic/upstreams/app', { active => 'blue' }, port => 'api',
    headers => { 'If-Match' => "\"$before\"" });
is($r->{status}, 200, 'the next change, with the generation read, works');
is($r->{json}{generation}, $before + 1, 'its generation is the next one');
$c2 = $t->count_backends(n => 20, header => 'x-pool');
is_deeply($c2, { blue => 20 }, 'and is followed');

done_testing();
