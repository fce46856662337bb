#!/usr/bin/perl

# Configuration errors of traffic_shift upstreams: "nginx -t" fails with
# an [emerg] naming the value, the file and the line ("# HERE" marks it).

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $t = TSTest->new();
$t->backend($_) for qw(blue1 green1);

sub wrap {
    my ($inside, $outside) = @_;
    $outside //= '';
    return <<"EOF";
http {
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
$outside
    traffic_shift app {
$inside
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }
}
EOF
}

my @cases = (
    [ 'unknown upstream',
      wrap("pool blue u_nope weight=100; # HERE"),
      qr/unknown upstream "u_nope" in pool "blue"/ ],
    [ 'implicit upstream is not a pool',
      wrap("pool blue 127.0.0.1 weight=100; # HERE",
           "server { listen 127.0.0.1:%%PORT_x%%; "
           . "location / { proxy_pass http://127.0.0.1:%%PORT_blue1%%; } }"),
      qr/unknown upstream "127\.0\.0\.1" in pool "blue"/ ],
    [ 'duplicate pool',
      wrap("pool blue u_blue weight=50;\npool blue u_green weight=50; # HERE"),
      qr/duplicate pool "blue"/ ],
    [ 'duplicate traffic_shift',
      wrap("pool blue u_blue weight=100;",
           "traffic_shift app { pool a u_blue weight=100; }"),
      qr/duplicate traffic_shift "app"/, 5 ],
    [ 'traffic_shift named like an upstream',
      wrap("pool blue u_blue weight=100;",
           "traffic_shift u_green { # HERE\n pool a u_blue weight=100; }"),
      qr/duplicate upstream "u_green"/ ],
    [ 'nested traffic_shift block',
      wrap("pool blue u_blue weight=100;\n"
           . "traffic_shift inner { # HERE\n pool a u_blue weight=100; }"),
      qr/unexpected "\{"/ ],
    [ 'nested traffic_shift',
      wrap("pool blue u_blue weight=100;\ntraffic_shift inner; # HERE"),
      qr/"traffic_shift" cannot be nested/ ],
    [ 'traffic_shift inside server',
      "http {\n upstream u { server 127.0.0.1:%%PORT_blue1%%; }\n"
      . " server { listen 127.0.0.1:%%PORT_main%%;\n"
      . " traffic_shift app { pool a u weight=100; } # HERE\n }\n}\n",
      qr/"traffic_shift" directive is not allowed here/ ],
    [ 'pool name with a bad character',
      wrap("pool blue! u_blue weight=100; # HERE"),
      qr/invalid pool name "blue!"/ ],
    [ 'pool name of 33 characters',
      wrap("pool " . ('a' x 33) . " u_blue weight=100; # HERE"),
      qr/invalid pool name "a{33}"/ ],
    [ 'weight with three decimals',
      wrap("pool blue u_blue weight=33.333; # HERE"),
      qr/invalid weight "weight=33\.333"/ ],
    [ 'weight over 100',
      wrap("pool blue u_blue weight=100.01; # HERE"),
      qr/invalid weight "weight=100\.01"/ ],
    [ 'negative weight',
      wrap("pool blue u_blue weight=-5; # HERE"),
      qr/invalid weight "weight=-5"/ ],
    [ 'weight not a number',
      wrap("pool blue u_blue weight=abc; # HERE"),
      qr/invalid weight "weight=abc"/ ],
    [ 'weight with a dot and no decimals',
      wrap("pool blue u_blue weight=100.; # HERE"),
      qr/invalid weight "weight=100\."/ ],
    [ 'unknown pool parameter',
      wrap("pool blue u_blue backup; # HERE"),
      qr/invalid parameter "backup"/ ],
    [ 'pool without an upstream',
      wrap("pool blue; # HERE"),
      qr/invalid number of arguments in "pool"/ ],
    [ 'weights not totalling 100',
      wrap("pool blue u_blue weight=90;\npool green u_green weight=5;\n"
           . "} # HERE\ntraffic_shift other { pool a u_blue weight=100;"),
      qr/pool weights of traffic_shift "app" total 95\.00, must total 100/ ],
    [ 'weights totalling 100.01',
      wrap("pool blue u_blue weight=50.01;\npool green u_green weight=50;\n"
           . "} # HERE\ntraffic_shift other { pool a u_blue weight=100;"),
      qr/total 100\.01, must total 100/ ],
    [ 'no pools',
      wrap("} # HERE\ntraffic_shift other { pool a u_blue weight=100;"),
      qr/no pools in traffic_shift "app"/ ],
    [ 'pool naming a traffic_shift',
      wrap("pool blue u_blue weight=100;",
           "traffic_shift other { pool a app weight=100; # HERE\n}"),
      qr/pool "a" must name an upstream\{\} block, "app" is a traffic_shift/ ],
    [ 'pool naming its own traffic_shift',
      wrap("pool blue app weight=100; # HERE"),
      qr/pool "blue" cannot use its own traffic_shift "app"/ ],
    [ 'unknown directive in the block',
      wrap("pool blue u_blue weight=100;\nweight 10; # HERE"),
      qr/unknown directive "weight" in traffic_shift "app"/ ],
    [ 'duplicate sticky',
      wrap("pool blue u_blue weight=100;\nsticky \$uri;\n"
           . "sticky \$args; # HERE"),
      qr/"sticky" is duplicate/ ],
    [ 'route without a value',
      wrap("pool blue u_blue weight=100;\nroute; # HERE"),
      qr/invalid number of arguments in "route"/ ],
    [ 'sticky with a bad variable',
      wrap("pool blue u_blue weight=100;\nsticky \$no_such_var;"),
      qr/unknown "no_such_var" variable/, 0 ],
    [ 'invalid zone size',
      wrap("pool blue u_blue weight=100;",
           "traffic_shift_zone shift 1q; # HERE"),
      qr/invalid zone size "1q"/ ],
    [ 'zone under what any configuration needs',
      wrap("pool blue u_blue weight=100;",
           "traffic_shift_zone shift 16k; # HERE"),
      qr/zone "shift" is too small, at least \d+k needed/ ],
    [ 'duplicate zone directive',
      wrap("pool blue u_blue weight=100;",
           "traffic_shift_zone a 1m;\ntraffic_shift_zone b 1m; # HERE"),
      qr/"traffic_shift_zone" directive is duplicate/ ],
    [ 'empty traffic_shift name',
      "http {\n upstream u { server 127.0.0.1:%%PORT_blue1%%; }\n"
      . ' traffic_shift "" { pool a u weight=100; } # HERE' . "\n}\n",
      qr/invalid traffic_shift name ""/ ],
    [ 'empty pool upstream',
      wrap('pool blue "" weight=100; # HERE'),
      qr/invalid upstream "" in pool "blue"/ ],
    [ 'seventeen pools',
      wrap("pool p1 u_blue weight=100;\npool p2 u_blue;\npool p3 u_blue;\npool p4 u_blue;\npool p5 u_blue;\npool p6 u_blue;\npool p7 u_blue;\npool p8 u_blue;\npool p9 u_blue;\npool p10 u_blue;\npool p11 u_blue;\npool p12 u_blue;\npool p13 u_blue;\npool p14 u_blue;\npool p15 u_blue;\npool p16 u_blue;\npool p17 u_blue; # HERE"),
      qr/too many pools in traffic_shift "app", at most 16/ ],
    [ 'empty zone name',
      wrap("pool blue u_blue weight=100;",
           'traffic_shift_zone "" 1m; # HERE'),
      qr/invalid zone name ""/ ],
    [ 'zone name of another module',
      wrap("pool blue u_blue weight=100;",
           "limit_req_zone \$binary_remote_addr zone=shift:1m rate=1r/s;\n"
           . "traffic_shift_zone shift 1m; # HERE"),
      qr/the shared memory zone "shift" is already declared for a different use/ ],
    [ 'empty state file',
      wrap("pool blue u_blue weight=100;",
           'traffic_shift_state ""; # HERE'),
      qr/invalid state file ""/ ],
    [ 'duplicate traffic_shift_state',
      wrap("pool blue u_blue weight=100;",
           "traffic_shift_state off;\ntraffic_shift_state off; # HERE"),
      qr/"traffic_shift_state" directive is duplicate/ ],
    [ 'port on a traffic_shift upstream',
      "http {\n upstream u { server 127.0.0.1:%%PORT_blue1%%; }\n"
      . " traffic_shift app { pool a u weight=100; }\n"
      . " server { listen 127.0.0.1:%%PORT_main%%;\n"
      . " location / { proxy_pass http://app:8080; } # HERE\n }\n}\n",
      qr/upstream "app" may not have port 8080/ ],
);

for my $case (@cases) {
    my ($name, $conf, $re, $line) = @$case;
    my @lines = split /\n/, $conf;
    ($line) = grep { $lines[$_ - 1] =~ /# HERE/ } 1 .. @lines
        unless defined $line;
    my ($rc, $out) = $t->nginx_t($conf);
    isnt($rc, 0, "$name: nginx -t fails");
    if (!$line) {
        # nginx itself checks variables once the configuration is read
        like($out, qr/\[emerg\] $re/, "$name: emerg names it") or diag($out);
        next;
    }
    like($out, qr/\[emerg\] (?:.*\W)?$re.* in \S+\/nginx\.conf:$line\b/,
        "$name: emerg names it at nginx.conf:$line")
        or diag($out);
}

# the smallest zone the directive asks for is enough for a small
# configuration: the minimum it states can be reached

my ($rc, $out) = $t->nginx_t(<<'EOF');
http {
    traffic_shift_zone shift 16k;
    upstream u_blue { server 127.0.0.1:%%PORT_blue1%%; }
    traffic_shift app { pool blue u_blue weight=100; }
}
EOF
my ($min) = $out =~ /at least (\d+)k needed/;
ok($min, "a zone of 16k: the minimum is stated (${\($min // '?')}k)")
    or diag($out);
($rc, $out) = $t->nginx_t(<<"EOF");
http {
    traffic_shift_zone shift ${\($min // 0)}k;
    upstream u_blue { server 127.0.0.1:%%PORT_blue1%%; }
    traffic_shift app { pool blue u_blue weight=100; }
}
EOF
is($rc, 0, "a zone of the stated minimum serves a one-server configuration")
    or diag($out);

# a zone too small for the configuration says how much it needs
my $servers = join "\n", map { "server 127.0.0.1:$_;" } 20001 .. 20300;
($rc, $out) = $t->nginx_t(<<"EOF");
http {
    traffic_shift_zone shift ${\(($min // 160) + 8)}k; # HERE
    upstream u_big { $servers }
    traffic_shift app { pool a u_big weight=100; }
}
EOF
isnt($rc, 0, 'zone too small for 300 servers: nginx -t fails');
like($out, qr/\[emerg\][ ]traffic_shift_zone[ ]"shift"[ ]is[ ]too[ ]small[ ]for[ ]this[ ]
    configuration,[ ]at[ ]least[ ]\d+k[ ]needed[ ]in[ ]\S+\/nginx\.conf:2\b/x,
    'zone too small: emerg says the size needed, the file and the line')
    or diag($out);

# the other *_pass directives accept a traffic_shift upstream
($rc, $out) = $t->nginx_t(<<'EOF');
http {
    upstream u_blue { server 127.0.0.1:%%PORT_blue1%%; }
    traffic_shift app { pool blue u_blue weight=100; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /p { proxy_pass http://app; }
        location /f { fastcgi_pass app; }
        location /u { uwsgi_pass app; }
        location /s { scgi_pass app; }
        location /g { grpc_pass grpc://app; }
    }
}
EOF
is($rc, 0, 'proxy, fastcgi, uwsgi, scgi and grpc pass to a traffic_shift')
    or diag($out);

done_testing();
