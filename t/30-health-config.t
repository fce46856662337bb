#!/usr/bin/perl

# health_check: every parameter and its defaults are accepted, and every
# bad value fails "nginx -t" with an emerg naming the file, line and value.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $t = TSTest->new;
$t->port('b1');

sub conf {
    my ($hc, %o) = @_;
    my $extra = $o{extra} // '';
    my $zone = $o{zone} ? 'zone app 64k;' : '';
    return <<"EOF";
http {
    upstream app { server 127.0.0.1:%%PORT_b1%%; $zone $hc }
    $extra
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }
}
EOF
}

# accepted

my @good = (
    'health_check;',
    'health_check type=http;',
    'health_check type=tcp interval=1s timeout=500ms fails=3 passes=2 '
        . 'port=8080 jitter=100ms;',
    'health_check uri=/healthz?full=1 host=app.example.com status=200 204 '
        . '300-399 body=^ok;',
    'health_check status=200,204,300-399 uri=/;',
    'health_check status=200 passes=3;',
    'health_check type=https host=app.example.com:8443 uri=/ready;',
    'health_check type=https host=127.0.0.1;',
    'health_check "body=^status: (ok|degraded)$" status=100-599;',
    'health_check interval=250ms timeout=10s fails=1000 passes=1000;',
);

for my $hc (@good) {
    my ($rc, $out) = $t->nginx_t(conf($hc));
    is($rc, 0, "accepted: $hc") or diag($out);
}

my ($rc, $out) = $t->nginx_t(conf('health_check uri=/healthz;', zone => 1));
is($rc, 0, 'accepted in an upstream with zone') or diag($out);

($rc, $out) = $t->nginx_t(conf('health_check;', extra => <<'EOF'));
    upstream other { server 127.0.0.1:%%PORT_b1%%;
                     health_check type=tcp; }
    upstream blue { server 127.0.0.1:%%PORT_b1%%; health_check uri=/h; }
    upstream green { server 127.0.0.1:%%PORT_b1%%; }
    traffic_shift shifted { pool blue blue weight=100; pool green green; }
EOF
is($rc, 0, 'accepted: upstreams used as pools and on their own')
    or diag($out);

# refused, with the value and the place

my @bad = (
    ['health_check foo;', qr/invalid health_check parameter "foo"/],
    ['health_check bogus=1;', qr/invalid health_check parameter "bogus=1"/],
    ['health_check =1;', qr/invalid health_check parameter "=1"/],
    ['health_check type=udp;', qr/invalid health_check type "type=udp"/],
    ['health_check type=;', qr/invalid health_check type "type="/],
    ['health_check uri=healthz;',
        qr/invalid health_check uri "uri=healthz".*"\/"/],
    ['health_check uri=;', qr/invalid health_check uri "uri="/],
    ['health_check "uri=/a b";', qr/invalid health_check uri "uri=\/a b"/],
    ['health_check host=;', qr/invalid health_check host "host="/],
    ['health_check "host=a b";', qr/invalid health_check host "host=a b"/],
    ['health_check port=0;', qr/invalid health_check port "port=0"/],
    ['health_check port=65536;',
        qr/invalid health_check port "port=65536"/],
    ['health_check port=http;', qr/invalid health_check port "port=http"/],
    ['health_check interval=0;',
        qr/invalid health_check interval "interval=0"/],
    ['health_check interval=often;',
        qr/invalid health_check interval "interval=often"/],
    ['health_check timeout=0s;',
        qr/invalid health_check timeout "timeout=0s"/],
    ['health_check timeout=-1;',
        qr/invalid health_check timeout "timeout=-1"/],
    ['health_check jitter=x;', qr/invalid health_check jitter "jitter=x"/],
    ['health_check fails=0;', qr/invalid health_check fails "fails=0"/],
    ['health_check fails=many;',
        qr/invalid health_check fails "fails=many"/],
    ['health_check passes=-2;',
        qr/invalid health_check passes "passes=-2"/],
    ['health_check passes=1001;',
        qr/invalid health_check passes "passes=1001"/],
    ['health_check status=99;', qr/invalid health_check status "99"/],
    ['health_check status=600;', qr/invalid health_check status "600"/],
    ['health_check status=300-200;',
        qr/invalid health_check status "300-200"/],
    ['health_check status=2xx;', qr/invalid health_check status "2xx"/],
    ['health_check status=200-;', qr/invalid health_check status "200-"/],
    ['health_check status=;', qr/invalid health_check status ""/],
    ['health_check status=200,;', qr/invalid health_check status "200,"/],
    ['health_check status=200 700;', qr/invalid health_check status "700"/],
    ['health_check status=200 ok;', qr/invalid health_check status "ok"/],
    ['health_check body=(unclosed;',
        qr/invalid health_check body regex: .*\(unclosed/],
    ['health_check body=;', qr/empty health_check body regex in "body="/],
    ['health_check; health_check;', qr/"health_check" directive is duplicate/],
    ['health_check interval=1s interval=2s;',
        qr/duplicate parameter "interval=2s" in health_check/],
    ['health_check type=tcp uri=/x;',
        qr/health_check parameter "uri" is not allowed with type=tcp/],
    ['health_check type=tcp status=200;',
        qr/health_check parameter "status" is not allowed with type=tcp/],
    ['health_check body=ok type=tcp;',
        qr/health_check parameter "body" is not allowed with type=tcp/],
);

for my $case (@bad) {
    my ($hc, $re) = @$case;
    ($rc, $out) = $t->nginx_t(conf($hc));
    isnt($rc, 0, "refused: $hc");
    like($out, qr/\[emerg\] .*$re.* in \S+nginx\.conf:2\b/,
         "emerg with value and line: $hc");
}

# only in upstream{}

($rc, $out) = $t->nginx_t(<<'EOF');
http {
    upstream app { server 127.0.0.1:%%PORT_b1%%; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        health_check;
        location / { proxy_pass http://app; }
    }
}
EOF
isnt($rc, 0, 'refused outside upstream{}');
like($out, qr/\[emerg\] "health_check" directive is not allowed here in \S+nginx\.conf:5\b/,
     'not allowed here, with the line');

done_testing();
