#!/usr/bin/perl

# Fleet mode on a 3-member etcd cluster: two nginx nodes list the three
# members (in different orders).  The leader is killed (SIGKILL): writes
# work again once the cluster elected another leader, on the members
# left; once both watches are back (after their backoff), every change
# made on either node reaches the other within a second.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;

TSEtcd::require_etcd();

my %node;
$node{a} = TSTest->new(name => 'node_a', workers => 2);
$node{a}->backend($_) for qw(blue1 green1);
$node{b} = TSTest->new(name => 'node_b', workers => 1);
my @etcd = TSEtcd->cluster($node{a}, 3);

sub conf {
    my ($n, @members) = @_;
    my $urls = join ' ', map { $_->url } @members;
    return <<"EOF";
http {
    traffic_shift_zone shift 1m;
    traffic_shift_sync $urls node=$n timeout=1s;
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_${n}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
}

$node{a}->write_config(conf('a', @etcd));
$node{b}->write_config(conf('b', @etcd[1, 2, 0]));
$node{$_}->start for qw(a b);

sub patch {
    my ($n, $blue) = @_;
    return $node{$n}->http('PATCH', '/traffic/upstreams/app',
                           port => "${n}_api", quiet => 1,
                           json => { weights => { blue => $blue,
                                                  green => 100 - $blue } });
}

sub wait_generation {
    my ($n, $gen, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (time < $deadline) {
        my $r = $node{$n}->http('GET', '/traffic/upstreams/app',
                                port => "${n}_api", quiet => 1);
        return 1 if $r->{status} == 200 && $r->{json}{generation} == $gen;
        sleep 0.01;
    }
    return 0;
}

my $r = patch('a', 10);
is($r->{status}, 200, 'a write on A') or diag($r->{body});
ok(wait_generation('b', $r->{json}{generation}, 1), 'B applied it');

my ($leader) = grep { $_->is_leader } @etcd;
ok($leader, 'the cluster has a leader') or BAIL_OUT('no etcd leader');
my @left = grep { $_ != $leader } @etcd;
note("killing the leader $leader->{name}");

my $start = time;
$leader->kill9;

# writes through either node work again once a leader is elected

my ($ok_a, $took);
my $deadline = time + 15;
while (time < $deadline) {
    $r = patch('a', 20);
    if ($r->{status} == 200) {
        $ok_a = 1;
        last;
    }
    like($r->{json}{error}{code}, qr/^sync_(unavailable|timeout)$/,
         'meanwhile, a write is refused with sync_unavailable, or '
         . 'sync_timeout when the dying leader had it')
        unless $r->{status} == 200 || $r->{status} == 412;
    sleep 0.1;
}
$took = time - $start;
ok($ok_a, sprintf('a write on A works again %.1f s after the leader died',
                  $took));
ok(wait_generation('b', $r->{json}{generation}, 5),
   'B applied it (its watch is on a member left)');

# A's watch was on the dead member: it comes back after its backoff (at
# most 2 s) on the next one, and catches up with a change made on B

$r = patch('b', 25);
is($r->{status}, 200, 'a write on B') or diag($r->{body});
ok(wait_generation('a', $r->{json}{generation}, 5),
   'A applied it (its watch moved to a member left)');

for my $i (1 .. 5) {
    my $res = patch($i % 2 ? 'b' : 'a', 30 + $i);
    is($res->{status}, 200, "change $i after the failover: 200")
        or diag($res->{body});
    my $other = $i % 2 ? 'a' : 'b';
    ok(wait_generation($other, $res->{json}{generation}, 1),
       "change $i reached node \u$other within 1 s");
}

is(scalar(grep { $_->is_leader } @left), 1, 'one of the members left leads');

$node{$_}->allow_log(qr/traffic_shift_sync/) for qw(a b);

done_testing();
