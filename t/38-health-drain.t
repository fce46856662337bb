#!/usr/bin/perl

# nginx 1.29.6+ "server ... drain": a draining server takes only the
# clients bound to it (sticky), so it is no live server for new clients: a
# pool whose only usable server drains gets no share, a change sending
# traffic to it is refused (409), and bound clients still reach it (the
# module keeps nginx's draining flag whole).

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSDns;

my $t = TSTest->new;

my ($version, $text) = TSDns::nginx_version($t);
plan skip_all => "nginx $text: \"server ... drain\" needs nginx 1.29.6 "
    . "or later" if $version < 1029006;

my ($sticky_rc) = $t->nginx_t(<<'EOF2');
http {
    upstream u { sticky route $arg_srv; server 127.0.0.1:1 route=a drain; }
    server { listen 127.0.0.1:%%PORT_main%%; location / { proxy_pass http://u; } }
}
EOF2
plan skip_all => 'this nginx has no sticky module ("drain" needs it)'
    if $sticky_rc != 0;

my $b = TSTest::Backends->new(backends => [qw(blue1 blue2 green1)]);
$b->start;

my $hc = 'health_check uri=/healthz interval=200ms timeout=200ms '
    . 'fails=1 passes=1;';

$t->write_config(<<"EOF2");
http {
    upstream app_blue {
        sticky route \$arg_srv;
        server 127.0.0.1:%%PORT_blue1%% route=a drain;
        server 127.0.0.1:%%PORT_blue2%% route=b down;
        $hc
    }
    upstream app_green { server 127.0.0.1:%%PORT_green1%%; }

    traffic_shift app {
        pool blue app_blue weight=50;
        pool green app_green weight=50;
    }

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
$t->start;

sub addr { '127.0.0.1:' . $t->port($_[0]) }

# the draining server is probed: its bound clients still use it
ok($t->wait_for(sub { $b->backend_hits('blue1', qr{^/healthz}) >= 2 },
                timeout => 5, what => 'probes of the draining server'),
   'a draining server is probed');
is($b->backend_hits('blue2', qr{^/healthz}), 0,
   'a server down in the configuration is not');

my $r = $t->get('/traffic/health/app_blue');
is($r->{status}, 200, 'GET /health/app_blue');
is($r->{json}{live}, 0, 'no live server: draining is not live');
is($r->{json}{servers}[0]{address}, addr('blue1'), 'server 0 is blue1');
is($r->{json}{servers}[0]{state}, 'draining', 'blue1 is draining');
ok(!$r->{json}{servers}[0]{config_down}, 'draining is not config_down');
is($r->{json}{servers}[1]{state}, 'down', 'blue2 is down');
ok($r->{json}{servers}[1]{config_down}, 'blue2 is config_down');

$r = $t->get('/traffic/upstreams/app');
is($r->{json}{pools}{blue}{healthy}, 0, 'pool blue: no healthy server');

is_deeply($t->count_backends(n => 20, header => 'x-traffic-pool'),
          { green => 20 }, 'the draining pool gets no share of new clients');

$r = $t->patch('/traffic/upstreams/app', { active => 'blue' });
is($r->{status}, 409, 'PATCH active=blue: 409, its only server drains');
is($r->{json}{error}{code}, 'pool_unavailable', 'error code pool_unavailable')
    if $r->{json}{error};

is_deeply($t->count_backends(n => 6, path => '/blue?srv=a'), { blue1 => 6 },
          'a client bound to the draining server still reaches it');

like($t->get('/traffic/metrics')->{body},
     qr/traffic_shift_server_up\{upstream="app_blue",server="\Q${\ addr('blue1')}\E"\} 0/,
     'metrics: the draining server is not up');

done_testing;
