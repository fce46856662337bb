#!/usr/bin/perl

# Fleet mode with etcd's user and password authentication: etcd (its
# simple tokens living 2 s) has a user "ts" who may read and write the
# prefix, and a user "nop" who may not.  Two nodes with the right password
# share their weights, write, list the fleet, and keep doing so after the
# token expired and after etcd forgot every token; a node with a wrong
# password and a node of "nop" keep their weights, answer writes with 503
# sync_unavailable and say why in their log.  user= and password_file=
# mistakes fail "nginx -t" with an [emerg] naming the file and the line.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;

# the configuration's mistakes, at "nginx -t"

my $t = TSTest->new(name => 'auth_conf');
$t->backend('blue1');
my $d = $t->testdir;

sub write_file {
    my ($path, $text) = @_;
    open(my $fh, '>', $path) or die "$path: $!";
    print $fh $text;
    close $fh;
}

write_file("$d/empty", "\n");
write_file("$d/good", "secret\n");

my @cases = (
    [ 'user without password_file',
      'traffic_shift_sync http://127.0.0.1:2379 user=ts; # HERE',
      qr/user= of traffic_shift_sync needs password_file=FILE/ ],
    [ 'password_file without user',
      "traffic_shift_sync http://127.0.0.1:2379 password_file=$d/good;"
      . ' # HERE',
      qr/password_file= of traffic_shift_sync needs user=NAME/ ],
    [ 'a password file that is not there',
      'traffic_shift_sync http://127.0.0.1:2379 user=ts '
      . "password_file=$d/missing; # HERE",
      qr/cannot open password_file "\Q$d\E\/missing" of traffic_shift_sync/ ],
    [ 'an empty password file',
      'traffic_shift_sync http://127.0.0.1:2379 user=ts '
      . "password_file=$d/empty; # HERE",
      qr/empty password_file "\Q$d\E\/empty" of traffic_shift_sync/ ],
    [ 'an empty user',
      "traffic_shift_sync http://127.0.0.1:2379 user= password_file=$d/good;"
      . ' # HERE',
      qr/invalid user "" in traffic_shift_sync/ ],
);

for my $case (@cases) {
    my ($name, $sync, $re) = @$case;
    my $conf = <<"EOF";
http {
    upstream u_blue { server 127.0.0.1:%%PORT_blue1%%; }
    traffic_shift app { pool blue u_blue weight=100; }
$sync
}
EOF
    my @lines = split /\n/, $conf;
    my ($line) = grep { $lines[$_ - 1] =~ /# HERE/ } 1 .. @lines;
    my ($rc, $out) = $t->nginx_t($conf);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\] $re.* in \S+\/nginx\.conf:$line\b/,
         "$name: emerg names it at nginx.conf:$line") or diag($out);
}

# etcd with users, its tokens living 2 s

my %node;
$node{a} = TSTest->new(name => 'auth_a');
$node{a}->backend($_) for qw(blue1 green1);
$node{$_} = TSTest->new(name => "auth_$_") for qw(b c d);

my $etcd = TSEtcd->new($node{a}, name => 'auth_etcd',
                       args => ['--auth-token-ttl', 2]);
$etcd->enable_auth('ts', 'ts-secret');
$etcd->etcdctl('user', 'add', 'nop:nop-secret');

my $td = $node{a}->testdir;
write_file("$td/ts.password", "ts-secret\n");
write_file("$td/wrong.password", "not-the-secret\n");
write_file("$td/nop.password", "nop-secret");

my %sync = (
    a => "user=ts password_file=$td/ts.password",
    b => "user=ts password_file=$td/ts.password",
    c => "user=ts password_file=$td/wrong.password",
    d => "user=nop password_file=$td/nop.password",
);

my $url = $etcd->url;

for my $n (qw(a b c d)) {
    $node{$n}->write_config(<<"EOF");
http {
    traffic_shift_zone shift 1m;
    traffic_shift_sync $url $sync{$n} node=$n timeout=1s;
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_auth_${n}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
    $node{$n}->start;
}

sub api {
    my ($n, $method, $path, $json) = @_;
    return $node{$n}->http($method, "/traffic$path", port => "auth_${n}_api",
                           quiet => 1, $json ? (json => $json) : ());
}

# until the code returns true, or for "seconds": its last value
sub poll {
    my ($seconds, $code) = @_;
    my $deadline = time + $seconds;
    my $v;
    while (time < $deadline) {
        return $v if $v = $code->();
        sleep 0.02;
    }
    return $v;
}

# a write on one node, seen by the other one through its watch
sub converge {
    my ($from, $to, $blue, $what) = @_;
    my $r = api($from, 'PATCH', '/upstreams/app',
                { weights => { blue => $blue, green => 100 - $blue } });
    is($r->{status}, 200, "$what: a write on \U$from\E") or diag($r->{body});
    my $gen = $r->{json}{generation} // -1;
    my $seen = poll(5, sub {
        my $g = api($to, 'GET', '/upstreams/app')->{json}{generation} // 0;
        return $g == $gen ? $g : 0;
    });
    is($seen, $gen, "$what: \U$to\E applied it");
}

converge('a', 'b', 60, 'the right password');

my $names = poll(5, sub {
    my $f = api('b', 'GET', '/fleet');
    my $s = join ',', map { $_->{node} } @{$f->{json}{nodes} // []};
    return $s eq 'a,b' ? $s : '';
});
is($names, 'a,b', 'GET /fleet: a and b, the nodes etcd accepts');

my ($value) = $etcd->get('/traffic-shift/upstreams/app');
like($value // '', qr/"blue":\s*60/, 'etcd holds the write');

# a wrong password, a user without permission

for my $case ([c => qr/etcd "127\.0\.0\.1:\d+" refused user "ts": authentication failed/,
               'a wrong password'],
              [d => qr/permission denied/, 'a user without permission'])
{
    my ($n, $re, $what) = @$case;
    ok(poll(5, sub { $node{$n}->error_log =~ $re }), "$what: the log says why");
    my $r = api($n, 'PATCH', '/upstreams/app',
                { weights => { blue => 0, green => 100 } });
    is($r->{status}, 503, "$what: a write answers 503");
    is($r->{json}{error}{code}, 'sync_unavailable', "$what: sync_unavailable");
    is(api($n, 'GET', '/upstreams/app')->{json}{weights}{blue}, 100,
       "$what: the node keeps its weights");
}

my @refused = $node{c}->error_log =~ /refused user "ts"/g;
is(scalar @refused, 1, 'a wrong password: logged once, not at every retry');

# the tokens expire (2 s): writes and watches go on

sleep 2.5;    # idle, longer than the tokens live
converge('b', 'a', 30, 'after the tokens expired');
converge('a', 'b', 70, 'after the tokens expired, the other way');

# etcd forgets every token (auth disabled, enabled): the next request is
# refused as "invalid auth token", authenticates again, and goes through

$etcd->etcdctl('auth', 'disable');
$etcd->etcdctl('auth', 'enable');

converge('a', 'b', 20, 'after etcd forgot the tokens');
ok(poll(5, sub {
    $node{a}->error_log =~ /etcd "[^"]+" no longer knows the token of user "ts", authenticating again/
}), 'A authenticated again');
unlike(join('', map { $node{$_}->error_log } qw(a b c d)),
       qr/ts-secret|nop-secret|not-the-secret/, 'no password in the logs');

$node{$_}->allow_log(qr/traffic_shift_sync/) for qw(a b c d);

done_testing();
