#!/usr/bin/perl

# type=https: a full TLS handshake with SNI from host=, then the HTTP check
# over TLS; a plain HTTP port probed with type=https fails with a TLS
# reason, and a TLS port probed with plain http fails on its status.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $openssl = (grep { -x "$_/openssl" } split /:/, $ENV{PATH} // '')[0];
plan skip_all => 'openssl command not found' unless $openssl;

my $t = TSTest->new;
my $tls = TSTest->new(module => 0, name => 'tls');

my $dir = $tls->testdir;
my $out = qx{$openssl/openssl req -x509 -newkey rsa:2048 -nodes \\
    -subj /CN=localhost -days 1 -keyout $dir/key.pem -out $dir/cert.pem 2>&1};
ok(-s "$dir/cert.pem" && -s "$dir/key.pem", 'self-signed certificate made')
    or diag($out);

$tls->write_config(<<'EOF');
http {
    log_format probe '$msec "$request" $status "$http_host" '
                     '"$http_user_agent" "$ssl_server_name" "$ssl_protocol"';
    server {
        listen 127.0.0.1:%%PORT_tls%% ssl;
        ssl_certificate %%TESTDIR%%/cert.pem;
        ssl_certificate_key %%TESTDIR%%/key.pem;
        access_log %%TESTDIR%%/tls.log probe;
        location = /healthz { return 200 "ok\n"; }
        location = /sni {
            if ($ssl_server_name != "health.example") { return 421; }
            return 200 "ok\n";
        }
        location / { return 200 "tls\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_plain%%;
        access_log %%TESTDIR%%/plain.log probe;
        location / { return 200 "ok\n"; }
    }
}
EOF
$tls->start;

$t->write_config(<<'EOF');
http {
    upstream tls_ok {
        server 127.0.0.1:%%PORT_tls%%;
        health_check type=https uri=/sni host=health.example
                     interval=300ms fails=1;
    }
    upstream tls_port {
        server 127.0.0.1:%%PORT_tls%%;
        health_check type=https uri=/sni?port host=health.example:8443
                     interval=300ms fails=1;
    }
    upstream tls_nosni {
        server 127.0.0.1:%%PORT_tls%%;
        health_check type=https uri=/healthz?nosni interval=300ms fails=1;
    }
    upstream tls_body {
        server 127.0.0.1:%%PORT_tls%%;
        health_check type=https uri=/healthz?body host=health.example
                     body=^ok interval=300ms fails=1;
    }
    upstream tls_plain {
        server 127.0.0.1:%%PORT_plain%%;
        health_check type=https uri=/healthz?tls interval=300ms fails=1;
    }
    upstream http_on_tls {
        server 127.0.0.1:%%PORT_tls%%;
        health_check uri=/healthz?plain interval=300ms fails=1;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass https://tls_ok; }
    }
}
EOF
$t->start;

my $tls_addr = '127.0.0.1:' . $t->port('tls');
my $plain_addr = '127.0.0.1:' . $t->port('plain');

sub probes {
    my ($uri) = @_;
    my @e;
    for my $line (split /\n/, $tls->read_file('tls.log') // '') {
        my ($req, $status, $host, $ua, $sni, $proto) =
            $line =~ /^\S+ "GET (\S+) HTTP\/1\.[01]" (\d+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)"/
            or next;
        push @e, { uri => $req, status => $status, host => $host, ua => $ua,
                   sni => $sni, proto => $proto } if $req eq $uri;
    }
    return @e;
}

ok($t->wait_for(sub {
    probes('/sni') >= 3 && probes('/sni?port') >= 3
        && probes('/healthz?nosni') >= 3 && probes('/healthz?body') >= 3
        && $t->error_log =~ /upstream "tls_plain" is down/
        && $t->error_log =~ /upstream "http_on_tls" is down/
}, timeout => 10, what => 'https probes'), 'https probes ran');

my @p = probes('/sni');
is_deeply([grep { $_->{status} != 200 } @p], [], 'SNI from host=: 200');
is($p[0]{sni}, 'health.example', 'server name sent in SNI');
is($p[0]{host}, 'health.example', 'Host header from host=');
like($p[0]{proto}, qr/^TLSv1\.[23]$/, "TLS protocol ($p[0]{proto})");
is($p[0]{ua}, 'nginx-traffic-shift health check', 'probe User-Agent');

@p = probes('/sni?port');
is_deeply([grep { $_->{status} != 200 } @p], [], 'host= with a port: 200');
is($p[0]{sni}, 'health.example', 'SNI without the port');
is($p[0]{host}, 'health.example:8443', 'Host header with the port');

@p = probes('/healthz?nosni');
is($p[0]{sni}, '-', 'no host=: no SNI');
is($p[0]{host}, 'tls_nosni', 'no host=: Host is the upstream name');

my $log = $t->error_log;

for my $u (qw(tls_ok tls_port tls_nosni tls_body)) {
    unlike($log, qr/in upstream "$u" (is down|failed)/, "$u: up");
}

like($log, qr/server \Q$plain_addr\E in upstream "tls_plain" is down after 1 failed health check\(s\), last: tls handshake failed/,
     'type=https on a plain port: down, "tls handshake failed"');
like($log, qr/server \Q$tls_addr\E in upstream "http_on_tls" is down after 1 failed health check\(s\), last: status 400/,
     'type=http on a TLS port: down, "status 400"');

is($t->get('/')->{body}, "tls\n", 'proxied over TLS to the checked upstream');

done_testing();
