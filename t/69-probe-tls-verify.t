#!/usr/bin/perl

# type=https probes verify the backend's certificate: against
# ssl_trusted_certificate= (a test CA made here with the openssl command),
# for the name of ssl_name= or host=; a failed verification marks the
# server down with OpenSSL's reason as its last_error, logged once.  A
# backend that demands a client certificate (ssl_verify_client on) is down
# without ssl_certificate= and up with it.  ssl_protocols=, ssl_ciphers=
# and ssl_server_name=off reach the handshake.

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

# a CA, another CA, a server certificate for backend.test, an expired one,
# and a client certificate, all from the CA

sub run {
    my ($cmd) = @_;
    my $out = qx{cd $dir && $openssl/openssl $cmd 2>&1};
    return 1 if $? == 0;
    diag("openssl $cmd: $out");
    return 0;
}

my $ec = '-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';
$tls->write_file('san.ext', "subjectAltName=DNS:backend.test\n");
$tls->write_file('client.ext', "extendedKeyUsage=clientAuth\n");

ok(run("req -x509 $ec -subj /CN=TestCA -keyout ca.key -out ca.pem -days 2")
   && run("req -x509 $ec -subj /CN=OtherCA -keyout other.key "
          . "-out other.pem -days 2")
   && run("req $ec -subj /CN=backend.test -keyout srv.key -out srv.csr")
   && run('x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial '
          . '-out srv.pem -days 2 -extfile san.ext')
   && run('x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial '
          . '-out old.pem -days -1 -extfile san.ext')
   && run("req $ec -subj /CN=probe-client -keyout client.key "
          . "-out client.csr")
   && run('x509 -req -in client.csr -CA ca.pem -CAkey ca.key '
          . '-CAcreateserial -out client.pem -days 2 -extfile client.ext'),
   'test CA and certificates made');

$tls->write_config(<<'EOF');
http {
    log_format probe '$server_port "$request" $status "$ssl_server_name" '
                     '"$ssl_protocol" "$ssl_cipher" "$ssl_client_s_dn" '
                     '$connection';
    access_log %%TESTDIR%%/tls.log probe;
    server {
        listen 127.0.0.1:%%PORT_good%% ssl;
        ssl_certificate %%TESTDIR%%/srv.pem;
        ssl_certificate_key %%TESTDIR%%/srv.key;
        location = /nosni {
            if ($ssl_server_name) { return 421; }
            return 200 "ok\n";
        }
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_expired%% ssl;
        ssl_certificate %%TESTDIR%%/old.pem;
        ssl_certificate_key %%TESTDIR%%/srv.key;
        location / { return 200 "ok\n"; }
    }
    server {
        listen 127.0.0.1:%%PORT_mtls%% ssl;
        ssl_certificate %%TESTDIR%%/srv.pem;
        ssl_certificate_key %%TESTDIR%%/srv.key;
        ssl_verify_client on;
        ssl_client_certificate %%TESTDIR%%/ca.pem;
        location / { return 200 "ok\n"; }
    }
}
EOF
$tls->start;

(my $conf = <<'EOF') =~ s/DIR/$dir/g;
http {
    upstream v_ok {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/v_ok ssl_name=backend.test
            ssl_trusted_certificate=DIR/ca.pem interval=200ms;
    }
    upstream v_host {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/v_host host=backend.test:8443
            ssl_verify=on ssl_trusted_certificate=DIR/ca.pem interval=200ms;
    }
    upstream v_noca {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/v_noca ssl_verify=on
            ssl_name=backend.test interval=200ms;
    }
    upstream v_wrongca {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/v_wrongca ssl_name=backend.test
            ssl_trusted_certificate=DIR/other.pem interval=200ms;
    }
    upstream v_name {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/v_name ssl_name=other.test
            ssl_trusted_certificate=DIR/ca.pem interval=200ms;
    }
    upstream v_expired {
        server 127.0.0.1:%%PORT_expired%%;
        health_check type=https uri=/v_expired host=backend.test
            ssl_trusted_certificate=DIR/ca.pem interval=200ms;
    }
    upstream v_off {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/v_off interval=200ms;
    }
    upstream v_off_ca {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/v_off_ca ssl_verify=off
            ssl_trusted_certificate=DIR/other.pem interval=200ms;
    }
    upstream m_nocert {
        server 127.0.0.1:%%PORT_mtls%%;
        health_check type=https uri=/m_nocert host=backend.test
            ssl_trusted_certificate=DIR/ca.pem interval=200ms;
    }
    upstream m_cert {
        server 127.0.0.1:%%PORT_mtls%%;
        health_check type=https uri=/m_cert host=backend.test
            ssl_trusted_certificate=DIR/ca.pem
            ssl_certificate=DIR/client.pem
            ssl_certificate_key=DIR/client.key interval=200ms;
    }
    upstream p_tls12 {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/p_tls12 host=backend.test
            ssl_protocols=TLSv1.2 ssl_ciphers=ECDHE-ECDSA-AES128-GCM-SHA256
            ssl_trusted_certificate=DIR/ca.pem interval=200ms;
    }
    upstream p_nosni {
        server 127.0.0.1:%%PORT_good%%;
        health_check type=https uri=/nosni host=backend.test
            ssl_server_name=off ssl_trusted_certificate=DIR/ca.pem
            interval=200ms;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /traffic/ { traffic_shift_api; }
    }
}
EOF
$t->write_config($conf);
$t->start;

sub server {
    my ($ups) = @_;
    my $r = $t->get("/traffic/health/$ups");
    return (($r->{json} && $r->{json}{servers}) || [])->[0] // {};
}

sub probes {
    my ($ups) = @_;
    my $p = server($ups)->{probes} // {};
    my $n = 0;
    $n += $p->{$_} // 0 for qw(ok fail timeout);
    return $n;
}

my @all = qw(v_ok v_host v_noca v_wrongca v_name v_expired v_off v_off_ca
             m_nocert m_cert p_tls12 p_nosni);

ok($t->wait_for(sub { !grep { probes($_) < 4 } @all },
                timeout => 15, what => 'four probes of each'),
   'every upstream probed four times');

my $issuer =
    qr/^ssl verify: unable to (get local issuer|verify the first) certificate/;
my %want = (
    v_ok => ['up'],
    v_host => ['up'],
    v_noca => ['down', $issuer],
    v_wrongca => ['down', $issuer],
    v_name => ['down',
               qr/^ssl verify: certificate does not match "other\.test"/],
    v_expired => ['down', qr/^ssl verify: certificate has expired/],
    v_off => ['up'],
    v_off_ca => ['up'],
    m_nocert => ['down', qr/^status 400/],
    m_cert => ['up'],
    p_tls12 => ['up'],
    p_nosni => ['up'],
);

my $log = $t->error_log;

for my $ups (@all) {
    my ($state, $err) = @{$want{$ups}};
    my $s = server($ups);
    is($s->{state}, $state, "$ups: $state") or diag(explain $s);

    if ($err) {
        like($s->{last_error} // '', $err, "$ups: last_error");
        my @down = $log =~ /(server \S+ in upstream "$ups" is down[^\n]*)/g;
        is(scalar @down, 1, "$ups: the change logged once")
            or diag(join "\n", @down);
        my $last = $s->{last_error} // '';
        like($down[0] // '', qr/last: \Q$last\E/, "$ups: the log says why");
    } else {
        is($s->{probes}{fail}, 0, "$ups: no probe failed")
            or diag(explain $s);
    }
}

# what the backend saw

my $q = '"([^"]*)"';
my $entry = qr/^(\d+) "\S+ (\S+) [^"]*" (\d+) $q $q $q $q (\d+)/;
my (%seen, %conns);
for my $line (split /\n/, $tls->read_file('tls.log') // '') {
    my ($port, $uri, $status, $sni, $proto, $cipher, $dn, $conn) =
        $line =~ $entry
        or next;
    $seen{$uri} //= { status => $status, sni => $sni, proto => $proto,
                      cipher => $cipher, dn => $dn };
    $conns{$uri}{$conn}++;
}

for my $uri (qw(/v_ok /m_cert)) {
    my @c = keys %{$conns{$uri} // {}};
    is(scalar @c, 1, "$uri: the probes kept one TLS connection ("
       . ($c[0] ? $conns{$uri}{$c[0]} : 0) . ' probes)');
}

is($seen{'/v_host'}{sni}, 'backend.test', 'SNI: host= without its port');
is($seen{'/v_ok'}{sni}, 'backend.test', 'SNI: ssl_name=');
is($seen{'/nosni'}{sni}, '-', 'ssl_server_name=off: no SNI');
is($seen{'/p_tls12'}{proto}, 'TLSv1.2', 'ssl_protocols=TLSv1.2');
is($seen{'/p_tls12'}{cipher}, 'ECDHE-ECDSA-AES128-GCM-SHA256',
   'ssl_ciphers=');
like($seen{'/m_cert'}{dn} // '', qr/CN=probe-client/,
     'mTLS: the client certificate was sent');
ok(!$seen{'/v_noca'} && !$seen{'/v_name'} && !$seen{'/v_expired'},
   'no request sent after a failed verification');

done_testing();
