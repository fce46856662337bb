#!/usr/bin/perl

# Fleet mode when etcd goes away: every node keeps routing by its last
# state, a write answers 503 sync_unavailable and changes nothing (unless
# ?local=on changes one node, until the fleet's next change), a node
# restarted meanwhile serves what its state file saved (also the weights
# it only got from the fleet), and once etcd is back the nodes watch again
# and apply the next change.  An etcd that stops answering without
# closing its connections is noticed, and the watch opened again.
# The second endpoint is used when the first refuses connections.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;

TSEtcd::require_etcd();

my $na = TSTest->new(name => 'node_a', workers => 1);
$na->backend($_) for qw(blue1 green1);
my $nb = TSTest->new(name => 'node_b', workers => 2);
my $etcd = TSEtcd->new($na);
my $url = $etcd->url;

# node B lists a closed port first: it fails over to etcd
my $closed = 'http://127.0.0.1:' . $nb->port('closed');

sub conf {
    my ($node, $endpoints) = @_;
    my $state = $nb->testdir . '/state.json';
    my $st = $node eq 'b' ? "traffic_shift_state $state;" : '';
    return <<"EOF";
http {
    traffic_shift_zone shift 1m;
    $st
    traffic_shift_sync $endpoints node=$node timeout=500ms;
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_${node}_main%%;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:%%PORT_${node}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
}

$na->write_config(conf('a', $url));
$nb->write_config(conf('b', "$closed $url"));
$na->start;
$nb->start;

my %node = (a => $na, b => $nb);

sub api {
    my ($n, $method, $json) = @_;
    return $node{$n}->http($method, '/traffic/upstreams/app',
        port => "${n}_api", quiet => 1, $json ? (json => $json) : ());
}

sub wait_for {
    my ($n, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (time < $deadline) {
        my $r = api($n, 'GET');
        return $r->{json} if $r->{status} == 200 && $cond->($r->{json});
        sleep 0.02;
    }
    return undef;
}

# the pools node N's requests went to, over 20 requests
sub routed {
    my ($n) = @_;
    my %seen;
    for (1 .. 20) {
        my $r = $node{$n}->http('GET', '/', port => "${n}_main", quiet => 1);
        $seen{$r->{status} == 200 ? $r->{body} =~ s/\n//r : $r->{status}}++;
    }
    return join ',', map { "$_=$seen{$_}" } sort keys %seen;
}

my $r = api('a', 'PATCH', { weights => { blue => 0, green => 100 } });
is($r->{status}, 200, 'all to green through A') or diag($r->{body});
my $gen = $r->{json}{generation};
ok(wait_for('b', sub { $_[0]{generation} == $gen }),
   'B applied it through its second endpoint');
is(routed('b'), 'green1=20', 'B routes everything to green');

# B's state file holds the weights it only got from the fleet

my $saved;
my $deadline = time + 5;
while (time < $deadline) {
    my $s = $nb->read_file('state.json') // '';
    last if ($saved = $s =~ /"generation":\s*$gen\b/);
    sleep 0.05;
}
ok($saved, "B's state file has generation $gen");

# etcd stops: last state kept, writes refused

$etcd->stop;

$r = api('a', 'PATCH', { weights => { blue => 100, green => 0 } });
is($r->{status}, 503, 'etcd down: a write answers 503');
is($r->{json}{error}{code}, 'sync_unavailable', 'sync_unavailable');
is(api('a', 'GET')->{json}{weights}{green}, 100, 'A kept its weights');
is(routed('a'), 'green1=20', 'A still routes everything to green');
is(routed('b'), 'green1=20', 'B still routes everything to green');

# the local override: this node only, until the fleet's next change

$r = $na->http('PATCH', '/traffic/upstreams/app?local=on', port => 'a_api',
               quiet => 1, json => { weights => { blue => 100, green => 0 } });
is($r->{status}, 200, 'etcd down: PATCH ?local=on on A: 200')
    or diag($r->{body});
is(routed('a'), 'blue1=20', 'A routes everything to blue');
is(routed('b'), 'green1=20', 'B still routes everything to green');
like($na->error_log, qr/weights changed on this node only \(local=on\)/,
     'A logs the override');
$r = $na->http('PATCH', '/traffic/upstreams/app?local=yes', port => 'a_api',
               quiet => 1, json => { weights => { blue => 100, green => 0 } });
is($r->{status}, 400, '?local=yes: 400');

# B restarts while etcd is down: it serves its saved state

$nb->stop;
$nb->start;
is(api('b', 'GET')->{json}{generation}, $gen,
   'B restarted during the outage: the saved generation');
is(routed('b'), 'green1=20', 'B restarted: still everything to green');

# etcd comes back: the nodes watch again and take the next change

$etcd->start;

$deadline = time + 10;
$r = undef;
while (time < $deadline) {
    $r = api('a', 'PATCH', { weights => { blue => 70, green => 30 } });
    last if $r->{status} == 200;
    sleep 0.1;
}
is($r->{status}, 200, 'etcd back: a write on A works again')
    or diag($r->{body});
$gen = $r->{json}{generation};
ok(wait_for('b', sub { $_[0]{generation} == $gen }, 5),
   'B caught up with the change after the outage');
is(routed('a'), 'blue1=14,green1=6', 'A follows the fleet again');

# etcd stops answering but keeps its connections (SIGSTOP): the watch
# cannot tell, the node key can; the watch is opened again

my $mark = $nb->log_mark;
kill 'STOP', $etcd->pid;
$deadline = time + 10;
my $silent;
while (time < $deadline) {
    last if ($silent = $nb->error_log(since => $mark) =~ /: no answer,/);
    sleep 0.1;
}
kill 'CONT', $etcd->pid;
ok($silent, 'a silent etcd: B gives its watch up within 10 s');

$deadline = time + 10;
while (time < $deadline) {
    $r = api('a', 'PATCH', { weights => { blue => 20, green => 80 } });
    last if $r->{status} == 200;
    sleep 0.1;
}
is($r->{status}, 200, 'etcd answers again: a write on A');
$gen = $r->{json}{generation};
ok(wait_for('b', sub { $_[0]{generation} == $gen }, 5),
   'B applied it through a new watch');

$na->allow_log(qr/traffic_shift_sync/);
$nb->allow_log(qr/traffic_shift_sync/);

done_testing();
