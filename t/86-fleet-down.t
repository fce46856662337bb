#!/usr/bin/perl

# Admin-down marks through the fleet: a server marked down through node A's
# API is down on node B (GET /health says admin, and B's requests stop
# reaching it), marked up again on B it is back on A; a mark put into etcd
# by an operator reaches both; probe states stay per node.  With etcd
# stopped, a mark answers 503 sync_unavailable and changes nothing;
# ?local=on marks one node only; bad input is refused before etcd is
# asked; B restarted during the outage keeps its marks from its state file
# and, with etcd back, a mark made in the fleet meanwhile.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use MIME::Base64 ();
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;

TSEtcd::require_etcd();

my $na = TSTest->new(name => 'down_a', workers => 2);
$na->backend($_) for qw(blue1 blue2);
my $nb = TSTest->new(name => 'down_b', workers => 2);
my $etcd = TSEtcd->new($na);
my $url = $etcd->url;

sub conf {
    my ($node) = @_;
    # B alone has a state file, and probes its servers
    my $st = $node eq 'b'
             ? 'traffic_shift_state ' . $nb->testdir . '/state.json;' : '';
    my $hc = $node eq 'b'
             ? 'health_check uri=/healthz interval=100ms fails=1 passes=1;'
             : '';
    return <<"EOF";
http {
    traffic_shift_zone shift 1m;
    $st
    traffic_shift_sync $url node=$node timeout=500ms;
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%;
                       server 127.0.0.1:%%PORT_blue2%%; $hc }
    traffic_shift app { pool blue u_blue weight=100; }
    server {
        listen 127.0.0.1:%%PORT_down_${node}_main%%;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:%%PORT_down_${node}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
}

$na->write_config(conf('a'));
$nb->write_config(conf('b'));
$na->start;
$nb->start;

my %node = (a => $na, b => $nb);
my $blue2 = '127.0.0.1:' . $na->port('blue2');
my $key = "/traffic-shift/servers/u_blue/$blue2";

sub mark {
    my ($n, $down, %o) = @_;
    my $id = $o{id} // $blue2;
    return $node{$n}->http('PATCH',
        "/traffic/health/u_blue/servers/$id" . ($o{query} // ''),
        port => "down_${n}_api", quiet => 1,
        json => $o{json} // { down => $down ? JSON::PP::true
                                            : JSON::PP::false });
}

sub server {
    my ($n, $addr) = @_;
    $addr //= $blue2;
    my $r = $node{$n}->http('GET', "/traffic/health/u_blue/servers/$addr",
                            port => "down_${n}_api", quiet => 1);
    return $r->{status} == 200 ? $r->{json} : {};
}

# polls node N until blue2's admin mark is DOWN; true if it came
sub wait_mark {
    my ($n, $down, $timeout) = @_;
    my $deadline = time + ($timeout // 2);
    while (time < $deadline) {
        return 1 if (server($n)->{admin_down} ? 1 : 0) == $down;
        sleep 0.01;
    }
    return 0;
}

# requests through node N that reached blue2, out of 20
sub to_blue2 {
    my ($n) = @_;
    my $before = $na->backend_hits('blue2', qr{^/r$});
    for (1 .. 20) {
        $node{$n}->http('GET', '/r', port => "down_${n}_main", quiet => 1);
    }
    return $na->backend_hits('blue2', qr{^/r$}) - $before;
}

cmp_ok(to_blue2('b'), '>', 0, 'B sends requests to blue2 at first');

# marked down on A: down on B, and B stops sending it requests

my $r = mark('a', 1);
is($r->{status}, 200, 'PATCH {"down":true} on A: 200') or diag($r->{body});
ok($r->{json}{admin_down}, 'the answer shows the mark');
my ($value, $mod) = $etcd->get($key);
is($value, '{"down":true}', "etcd has {\"down\":true} at $key");
ok(wait_mark('b', 1, 1), 'B has the mark within 1 s');
my $s = server('b');
is($s->{state}, 'admin_down', 'GET on B: state admin_down');
is($s->{down_reason}, 'admin', 'GET on B: down_reason admin');
is(to_blue2('b'), 0, 'B sends no request to blue2');
is(to_blue2('a'), 0, 'nor does A');
my $u = qr/server "\Q$blue2\E" of upstream "u_blue"/;
like($nb->error_log,
     qr/\[notice\].* $u set admin-down from the fleet, version \d+, revision $mod/,
     'B logs the mark from the fleet');
like($na->error_log,
     qr/\[notice\].* $u set admin-down by client \S+ in the fleet, version/,
     'A logs the client\'s mark');

# by index on B: the key still names the address; up again on A

$r = mark('b', 0, id => 1);
is($r->{status}, 200, 'PATCH {"down":false} on B by index: 200')
    or diag($r->{body});
is(($etcd->get($key))[0], '{"down":false}', 'the same key, now false');
ok(wait_mark('a', 0, 1), 'A has blue2 back within 1 s');
is(server('a')->{state}, 'up', 'GET on A: up');
cmp_ok(to_blue2('a'), '>', 0, 'A sends requests to blue2 again');

# an operator's put in etcd reaches both nodes

my $rev = $etcd->put($key, '{"down":true}');
ok(wait_mark($_, 1, 1), "an operator's put: \U$_\E has the mark")
    for qw(a b);

# an invalid value is ignored, a deleted key changes nothing

my $bad = $etcd->put($key, '{"down":"yes"}');
$etcd->call('/v3/kv/deleterange',
            { key => MIME::Base64::encode_base64($key, '') });
$rev = $etcd->put("/traffic-shift/servers/u_blue/127.0.0.1:1",
                  '{"down":true}');
ok($na->wait_for(sub { $nb->error_log =~ /no server "127\.0\.0\.1:1"/ },
                 timeout => 2, what => 'an unknown server'),
   'an unknown server in etcd: B logs it');
like($nb->error_log,
     qr/\[error\].* invalid admin mark for $u at revision $bad in etcd/,
     'an invalid value: logged at error');
ok(server('b')->{admin_down} && server('a')->{admin_down},
   'the mark stays on both nodes after the invalid value and the delete');

$r = mark('a', 0);
is($r->{status}, 200, 'up again through A');
ok(wait_mark('b', 0, 1), 'and on B');

# bad input: refused before etcd is asked

$r = mark('a', 0, json => { down => 'yes' });
is($r->{status}, 400, 'a bad body: 400');
is($r->{json}{error}{code}, 'invalid_type', 'invalid_type');
$r = mark('a', 0, json => {});
is($r->{json}{error}{code}, 'missing_field', 'no "down": missing_field');
$r = mark('a', 1, id => '127.0.0.1:1');
is($r->{status}, 404, 'an unknown server: 404');
is($r->{json}{error}{code}, 'unknown_server', 'unknown_server');
$r = mark('a', 1, query => '?local=off');
is($r->{status}, 400, '?local=off: 400');
is($r->{json}{error}{code}, 'invalid_value', 'invalid_value');
$r = mark('a', 1, query => '?wait=fleet');
is($r->{json}{error}{code}, 'invalid_value', '?wait=fleet: invalid_value');
$r = $na->http('PATCH', "/traffic/health/u_blue/servers/$blue2",
               port => 'down_a_api', quiet => 1,
               json => { down => JSON::PP::true },
               headers => { 'If-Match' => '"1"' });
is($r->{status}, 412, 'a stale If-Match: 412');
ok(!server('a')->{admin_down}, 'none of them changed the mark');
my ($v2, $mod2) = $etcd->get($key);
is($v2, '{"down":false}', 'nor the key in etcd');

# etcd stopped: 503, nothing changed; ?local=on marks one node only

$r = mark('a', 1);
is($r->{status}, 200, 'blue2 down through A before the outage');
ok(wait_mark('b', 1, 1), 'B has it');
ok($nb->wait_for(sub { -s $nb->testdir . '/state.json'
                       && $nb->read_file('state.json') =~ /\Q$blue2\E/ },
                 timeout => 2, what => 'the state file'),
   'B\'s state file holds the mark it got from the fleet');

$etcd->stop;

$r = mark('a', 0);
is($r->{status}, 503, 'etcd stopped: PATCH answers 503');
is($r->{json}{error}{code}, 'sync_unavailable', 'sync_unavailable');
ok(server('a')->{admin_down}, 'the mark did not change on A');

$r = mark('a', 1, json => { down => 1 });
is($r->{status}, 400, 'etcd stopped: a bad body is still 400');
$r = mark('a', 1, id => '127.0.0.1:1');
is($r->{status}, 404, 'and an unknown server 404');

$r = mark('a', 0, query => '?local=on');
is($r->{status}, 200, '?local=on: 200') or diag($r->{body});
ok(!server('a')->{admin_down}, 'A has blue2 back');
cmp_ok(to_blue2('a'), '>', 0, 'A sends it requests');
ok(server('b')->{admin_down}, 'B keeps the mark');
is(to_blue2('b'), 0, 'and sends it nothing');
like($na->error_log, qr/\[warn\].*changed on this node only \(local=on\)/,
     'A warns of the local mark');

# B restarted during the outage: its state file keeps the mark

$nb->stop;
$nb->start;
ok(server('b')->{admin_down}, 'B restarted during the outage: still down');
is(to_blue2('b'), 0, 'B restarted: blue2 gets nothing');

# etcd back: the local override stays until the fleet's next mark

my $mark = $na->log_mark;
$etcd->start;
ok($na->wait_for(sub { $na->error_log(since => $mark) =~ /reached again/ },
                 timeout => 5, what => 'A\'s watch back'),
   'etcd back: A reads the keys again');
ok(!server('a')->{admin_down},
   'the mark already in etcd does not undo A\'s local override');
ok($na->wait_for(sub { mark('b', 1)->{status} == 200 }, timeout => 5,
                 what => 'etcd back'),
   'a mark through B works again');
ok(wait_mark('a', 1, 2), 'the fleet\'s next mark ends A\'s local override');
$r = mark('b', 0);
is($r->{status}, 200, 'up through B');
ok(wait_mark('a', 0, 1), 'A has it');
cmp_ok(to_blue2('b'), '>', 0, 'B sends requests to blue2 again');

# a probe's verdict stays on its node: only the admin mark is shared

my $blue1 = '127.0.0.1:' . $na->port('blue1');
my $keys = () = $etcd->call('/v3/kv/range', {
    key => MIME::Base64::encode_base64('/traffic-shift/servers/', ''),
    range_end => MIME::Base64::encode_base64('/traffic-shift/servers0', ''),
})->{kvs}->@*;
$na->set_backend('blue1', healthy => 0);
ok($nb->wait_for(sub { (server('b', $blue1)->{down_reason} // '') eq 'probe' },
                 timeout => 3, what => 'blue1 down by probe on B'),
   'blue1 fails its probes on B: down_reason probe');
is(server('a', $blue1)->{state}, 'up', 'A (no probes) keeps blue1 up');
is(scalar(() = $etcd->call('/v3/kv/range', {
       key => MIME::Base64::encode_base64('/traffic-shift/servers/', ''),
       range_end => MIME::Base64::encode_base64('/traffic-shift/servers0',
                                                ''),
   })->{kvs}->@*), $keys, 'no key in etcd for a probe\'s verdict');
$na->set_backend('blue1', healthy => 1);
ok($nb->wait_for(sub { server('b', $blue1)->{state} eq 'up' },
                 timeout => 3, what => 'blue1 up on B'),
   'blue1 passes again on B');

$_->allow_log(qr/traffic_shift_sync|local=on|health check/) for $na, $nb;

done_testing();
