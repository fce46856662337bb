#!/usr/bin/perl

# nginx 1.27.3+ "server NAME resolve" inside a pool: the addresses the name
# resolves to are the upstream's servers, as they come and go: listed in
# /health, probed, counted as live (a 50/50 split splits), drained by an
# admin mark kept in the state file under "upstream/address"; the
# placeholder nginx keeps for the name is never a server.  A pool whose
# name resolves to nothing has no live server.  A DNS server of the test's
# own answers for app.test with addresses the test changes.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSDns;

my $t = TSTest->new(workers => 2);

my ($version, $text) = TSDns::nginx_version($t);
plan skip_all => "nginx $text: \"server NAME resolve\" needs nginx 1.27.3 "
    . "or later" if $version < 1027003;

my $d = $t->testdir;
my $dns = TSDns->new(name => 'app.test', dir => $d,
                     addrs => ['127.0.0.2', '127.0.0.3']);
my $dns_port = $dns->port;

# backends r2, r3, r4 on 127.0.0.2..4, one port; r1 on 127.0.0.1 would
# take the probes of the placeholder (0.0.0.0) if there were any
my $port = $t->port('app');
my $be = TSTest->new(module => 0, name => 'rbackends');
my $bd = $be->testdir;
my $servers = join "\n", map {
    "server { listen 127.0.0.$_:$port; access_log $bd/r$_.log; "
    . "add_header X-Backend r$_ always; "
    . "location / { return 200 \"r$_\\n\"; } "
    . "location = /healthz { if (-f $bd/r$_.unhealthy) { return 503; } "
    . "return 200 \"ok\\n\"; } }"
} 1 .. 4;
$be->write_config("http {\n$servers\n}\n");
$be->start;

my $g = TSTest::Backends->new(backends => [qw(green1)]);
$g->start;

my $resolver = "resolver 127.0.0.1:$dns_port valid=1s ipv6=off;";

$t->write_config(<<"EOF2");
http {
    upstream app_blue {
        zone app_blue 64k;
        $resolver
        server app.test:$port resolve;
        health_check uri=/healthz interval=300ms timeout=300ms fails=1
                     passes=1;
    }
    upstream app_green { server 127.0.0.1:%%PORT_green1%%; }
    upstream app_none {
        zone app_none 64k;
        $resolver
        server none.test:$port resolve;
    }

    traffic_shift app {
        pool blue app_blue weight=50;
        pool green app_green weight=50;
        pool none app_none weight=0;
    }

    traffic_shift_state $d/state/ts.json;

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / {
            proxy_pass http://app;
            add_header X-Traffic-Pool \$traffic_shift_pool always;
        }
        location /blue { proxy_pass http://app_blue; }
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF2
mkdir "$d/state";
chmod 0777, "$d/state";
$t->allow_log(qr/none\.test could not be resolved/);
$t->start;

sub a { "127.0.0.$_[0]:$port" }

sub health {
    my $r = $t->get('/traffic/health/app_blue');
    return $r->{status} == 200 ? $r->{json} : undef;
}

sub addresses {
    my $h = health() or return '';
    return join ' ', sort map { $_->{address} } @{$h->{servers}};
}

sub probes {
    my ($n) = @_;
    my $log = $be->read_file("r$n.log") // '';
    return scalar(() = $log =~ m{GET /healthz}g);
}

ok($t->wait_for(sub { addresses() eq join ' ', a(2), a(3) },
                timeout => 10, what => 'the resolved addresses'),
   'the resolved addresses are the servers of app_blue');

my $h = health();
ok(!grep({ $_->{address} eq '' || $_->{address} =~ /^0\.0\.0\.0/ }
         @{$h->{servers}}), 'the placeholder is no server');

ok($t->wait_for(sub { probes(2) >= 2 && probes(3) >= 2 }, timeout => 10,
                what => 'probes of the resolved addresses'),
   'the resolved addresses are probed');

ok($t->wait_for(sub { my $h = health();
                      $h && !grep { $_->{state} ne 'up' } @{$h->{servers}} },
                timeout => 10, what => 'resolved servers up'),
   'both are up after their probes');
is(health()->{live}, 2, 'two live servers');

is($t->get('/traffic/upstreams/app')->{json}{pools}{blue}{healthy}, 2,
   'pool blue: two healthy servers');

# every worker knows them: the split really splits

my $c = $t->count_backends(n => 200, header => 'x-traffic-pool');
ok(($c->{blue} // 0) >= 80 && ($c->{green} // 0) >= 80
   && ($c->{blue} // 0) + ($c->{green} // 0) == 200,
   "50/50 splits between the pools (blue $c->{blue}, green $c->{green})");

$c = $t->count_backends(n => 40, path => '/blue');
ok(($c->{r2} // 0) >= 10 && ($c->{r3} // 0) >= 10,
   'both resolved addresses take requests');

# the metrics name each address, never an empty one

my $m = $t->get('/traffic/metrics')->{body};
unlike($m, qr/server=""/, 'metrics: no empty server label');
like($m, qr/traffic_shift_server_up\{upstream="app_blue",server="\Q${\ a(2)}\E"\} 1/,
     'metrics: a resolved address is up');

# a server by index answers as JSON

my $r = $t->get('/traffic/health/app_blue/servers/0');
is($r->{status}, 200, 'GET servers/0: 200');
like($r->{json}{address} // '', qr/^127\.0\.0\.[23]:\Q$port\E$/,
     'GET servers/0: a resolved address');

# drained by hand, by address

$r = $t->patch('/traffic/health/app_blue/servers/' . a(2),
               { down => JSON::PP::true });
is($r->{status}, 200, 'PATCH a resolved server down: 200');
is($r->{json}{address}, a(2), 'the answer names it');
is($r->{json}{state}, 'admin_down', 'it is admin_down');
ok($r->{json}{persisted}, 'the mark is saved');
like($t->read_file('state/ts.json') // '', qr{"app_blue/\Q${\ a(2)}\E"},
     'the state file keeps it as "upstream/address"');

is_deeply($t->count_backends(n => 20, path => '/blue'), { r3 => 20 },
          'a drained address takes no request');

$r = $t->patch('/traffic/health/app_blue/servers/' . a(2),
               { down => JSON::PP::false });
is($r->{status}, 200, 'PATCH it back up: 200');
$c = $t->count_backends(n => 40, path => '/blue');
ok(($c->{r2} // 0) >= 10, 'it takes requests again');

# a pool of a name that resolves to nothing has no live server

$h = $t->get('/traffic/health/app_none')->{json};
is_deeply($h->{servers}, [], 'app_none: no server');
is($h->{live}, 0, 'app_none: none live');

$r = $t->patch('/traffic/upstreams/app',
               { weights => { blue => 40, green => 40, none => 20 } });
is($r->{status}, 409, 'weight to a pool with nothing resolved: 409');

# addresses come and go with the DNS; the one leaving is drained first

is($t->patch('/traffic/health/app_blue/servers/' . a(2),
             { down => JSON::PP::true })->{status}, 200,
   'drain the address about to leave');

$dns->set('127.0.0.3', '127.0.0.4');

ok($t->wait_for(sub { addresses() eq join ' ', a(3), a(4) },
                timeout => 10, what => 'the new addresses'),
   'an address removed from the DNS is gone, one added is there');
ok($t->wait_for(sub { probes(4) >= 2 }, timeout => 10,
                what => 'probes of the new address'),
   'the new address is probed');

# every worker drops the probe within its next second
select(undef, undef, undef, 2);
my $before = probes(2);
select(undef, undef, undef, 1);
is(probes(2), $before, 'the address gone is probed no more');

$c = $t->count_backends(n => 40, path => '/blue');
ok(($c->{r3} // 0) >= 10 && ($c->{r4} // 0) >= 10 && !$c->{r2},
   'requests go to the addresses resolved now');

# a resolved address that fails its probes is down, the pool lives on

$be->write_file('r3.unhealthy', '');
ok($t->wait_for(sub { my $h = health() or return 0;
                      grep { $_->{address} eq a(3) && $_->{state} eq 'down' }
                          @{$h->{servers}} },
                timeout => 10, what => 'r3 down'),
   'a resolved address failing its probes is down');
is(health()->{live}, 1, 'one live server left');
is_deeply($t->count_backends(n => 10, path => '/blue'), { r4 => 10 },
          'requests go to the live one');

# an address back within a minute is as it left: drained

$dns->set('127.0.0.2', '127.0.0.3', '127.0.0.4');
ok($t->wait_for(sub { addresses() eq join ' ', a(2), a(3), a(4) },
                timeout => 10, what => 'the address back'),
   'the address is back');
is((grep { $_->{address} eq a(2) } @{health()->{servers}})[0]{state},
   'admin_down', 'with its admin-down mark');
is_deeply($t->count_backends(n => 10, path => '/blue'), { r4 => 10 },
          'and takes no request');
like($t->read_file('state/ts.json') // '', qr{"app_blue/\Q${\ a(2)}\E"},
     'the state file still has the mark');

# a restart restores the mark by address, once the name resolves again

$t->stop;
$t->start;
ok($t->wait_for(sub { addresses() eq join ' ', a(2), a(3), a(4) },
                timeout => 10, what => 'the addresses after a restart'),
   'resolved again after a restart');
is((grep { $_->{address} eq a(2) } @{health()->{servers}})[0]{state},
   'admin_down', 'the mark is restored from the state file');
like($t->error_log,
     qr/resolved address "\Q${\ a(2)}\E" of upstream "app_blue" stays admin-down/,
     'and logged');

is(probes(1), 0, 'the placeholder was never probed');
is($be->read_file('r1.log') // '', '', 'nor used');

done_testing;
