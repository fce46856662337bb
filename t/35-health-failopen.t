#!/usr/bin/perl

# Health and routing: a pool whose servers are all down gets no share and
# its weight goes to the other weighted pools; an upstream whose servers
# are all down fails open (traffic flows, a warning is logged); making a
# dead pool active through the API is refused with 409 unless forced.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $t = TSTest->new;
my $b = TSTest::Backends->new(
    backends => [qw(blue1 green1 canary1 canary2 solo1 solo2)]);
$b->start;

# the admin API is built separately: its part runs once it is there
my ($api_rc) = $t->nginx_t(<<'EOF');
http {
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
my $api = $api_rc == 0 ? 'location /traffic/ { traffic_shift_api write=on; }'
                       : '';

my $hc = 'health_check uri=/healthz interval=200ms timeout=200ms '
    . 'fails=1 passes=1;';

$t->write_config(<<"EOF");
http {
    upstream app_blue { server 127.0.0.1:%%PORT_blue1%%; $hc }
    upstream app_green { server 127.0.0.1:%%PORT_green1%%; $hc }
    upstream app_canary { server 127.0.0.1:%%PORT_canary1%%;
                          server 127.0.0.1:%%PORT_canary2%%; $hc }
    upstream solo { server 127.0.0.1:%%PORT_solo1%%;
                    server 127.0.0.1:%%PORT_solo2%%; $hc }

    traffic_shift app {
        pool blue app_blue weight=50;
        pool green app_green weight=30;
        pool canary app_canary weight=20;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / {
            proxy_pass http://app;
            add_header X-Traffic-Pool \$traffic_shift_pool always;
        }
        location /solo { proxy_pass http://solo; }
        $api
    }
}
EOF
$t->start;

sub pools {
    my ($n) = @_;
    return $t->count_backends(n => $n, header => 'x-traffic-pool');
}

sub wait_state {
    my ($mark, $re, $what) = @_;
    return $t->wait_for(sub { $t->error_log(since => $mark) =~ $re },
                        timeout => 10, what => $what);
}

sub addr { '127.0.0.1:' . $t->port($_[0]) }

is_deeply(pools(100), { blue => 50, green => 30, canary => 20 },
          'all healthy: 50/30/20');

# a pool with no live server gets no share

my $mark = $t->log_mark;
$b->set_backend($_, healthy => 0) for qw(canary1 canary2);
ok(wait_state($mark, qr/\Q${\ addr('canary1')}\E in upstream "app_canary" is down(?s:.*)\Q${\ addr('canary2')}\E in upstream "app_canary" is down|\Q${\ addr('canary2')}\E in upstream "app_canary" is down(?s:.*)\Q${\ addr('canary1')}\E in upstream "app_canary" is down/,
              'canary servers down'), 'both canary servers marked down');

is_deeply(pools(80), { blue => 50, green => 30 },
          'canary down: its weight goes to blue and green, 50:30');

my $before = $b->backend_hits('canary1', qr{^/(?!healthz)})
    + $b->backend_hits('canary2', qr{^/(?!healthz)});

if ($api) {
    my $r = $t->patch('/traffic/upstreams/app', { active => 'canary' });
    is($r->{status}, 409, 'PATCH active=canary with canary down: 409');
    is_deeply(pools(80), { blue => 50, green => 30 },
              'refused change changed nothing');

    $r = $t->patch('/traffic/upstreams/app',
                   { weights => { blue => 80, canary => 20 } });
    is($r->{status}, 409, 'PATCH weights giving canary 20: 409');

    $r = $t->patch('/traffic/upstreams/app',
                   { weights => { blue => 70, green => 30 } });
    is($r->{status}, 200, 'PATCH without the dead pool: 200');
    is_deeply(pools(100), { blue => 70, green => 30 }, 'applied: 70/30');

    $r = $t->patch('/traffic/upstreams/app',
                   { active => 'canary', force => JSON::PP::true });
    is($r->{status}, 200, 'PATCH active=canary with force: 200');

    # the only weighted pool is dead: by weight alone, fail open
    my $c = pools(20);
    is_deeply($c, { canary => 20 }, 'forced: canary serves (fail open)');

    $r = $t->patch('/traffic/upstreams/app',
                   { weights => { blue => 50, green => 30, canary => 20 },
                     force => JSON::PP::true });
    is($r->{status}, 200, 'weights restored');
    $before = $b->backend_hits('canary1', qr{^/(?!healthz)})
        + $b->backend_hits('canary2', qr{^/(?!healthz)});
} else {
    SKIP: { skip 'traffic_shift_api is not supported by this build', 1; }
}

is_deeply(pools(80), { blue => 50, green => 30 }, 'still no share to canary');
is($b->backend_hits('canary1', qr{^/(?!healthz)})
       + $b->backend_hits('canary2', qr{^/(?!healthz)}),
   $before, 'no request reached a canary server while down');

# back: the share returns

$mark = $t->log_mark;
$b->set_backend('canary2', healthy => 1);
ok(wait_state($mark, qr/\Q${\ addr('canary2')}\E in upstream "app_canary" is up/,
              'canary2 up'), 'canary2 back up');
is_deeply(pools(100), { blue => 50, green => 30, canary => 20 },
          'one canary server up: 50/30/20 again');

# every server of an upstream down: fail open, with a warning

$mark = $t->log_mark;
$b->set_backend($_, healthy => 0) for qw(solo1 solo2);
ok(wait_state($mark, qr/\Q${\ addr('solo1')}\E in upstream "solo" is down(?s:.*)\Q${\ addr('solo2')}\E in upstream "solo" is down|\Q${\ addr('solo2')}\E in upstream "solo" is down(?s:.*)\Q${\ addr('solo1')}\E in upstream "solo" is down/,
              'solo down'), 'every solo server down');

my $c = $t->count_backends(n => 20, path => '/solo');
is_deeply($c, { solo1 => 10, solo2 => 10 },
          'all servers down: requests still flow to all of them');
like($t->error_log(since => $mark),
     qr/\[warn\] .*no live server in upstream "solo", failing open/,
     'fail open logged as a warning');

# every weighted pool down: choose by weight alone, no 502

$mark = $t->log_mark;
$b->set_backend($_, healthy => 0) for qw(blue1 green1 canary2);
ok(wait_state($mark, qr/(?s:in upstream "app_blue" is down.*in upstream "app_green" is down|in upstream "app_green" is down.*in upstream "app_blue" is down)/,
              'blue and green down'), 'blue and green down');
ok(wait_state($mark, qr/in upstream "app_canary" is down/, 'canary down'),
   'canary down again');

is_deeply(pools(100), { blue => 50, green => 30, canary => 20 },
          'no pool live: by weight, fail open, no error');
like($t->error_log(since => $mark),
     qr/\[warn\] .*traffic_shift "app": no weighted pool has a live server/,
     'pool fail open logged as a warning');

done_testing();
