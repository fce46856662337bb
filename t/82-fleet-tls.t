#!/usr/bin/perl

# Fleet mode over TLS: etcd serves its client port with a certificate of a
# test CA (for 127.0.0.1) and requires client certificates.  Two nodes
# with the CA and a client certificate share their weights; a node with
# another CA refuses etcd's certificate, and a node without a client
# certificate is refused by etcd, and a node that names etcd by a host the
# certificate does not name refuses it: they answer writes with 503
# sync_unavailable and say why in their log.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use TSTest;
use TSEtcd;

TSEtcd::require_etcd();
my $openssl = (grep { -x "$_/openssl" } split /:/, $ENV{PATH} // '')[0];
plan skip_all => 'openssl command not found' unless $openssl;

my %node;
$node{a} = TSTest->new(name => 'node_a');
$node{a}->backend($_) for qw(blue1 green1);
$node{$_} = TSTest->new(name => "node_$_") for qw(b c d e);

# a CA, etcd's certificate for 127.0.0.1, a client certificate, another CA

my $d = $node{a}->testdir;
my $ssl = sub {
    my $out = qx{$openssl/openssl @_ 2>&1};
    die "openssl @_: $out" if $?;
};
open(my $fh, '>', "$d/san.ext") or die "$d/san.ext: $!";
print $fh "subjectAltName=IP:127.0.0.1\n";
close $fh;
for my $ca (qw(ca other)) {
    $ssl->("req -x509 -newkey rsa:2048 -nodes -subj /CN=$ca -days 1"
           . " -keyout $d/$ca.key -out $d/$ca.pem");
}
for my $who (qw(etcd client)) {
    $ssl->("req -newkey rsa:2048 -nodes -subj /CN=$who -keyout $d/$who.key"
           . " -out $d/$who.csr");
    $ssl->("x509 -req -in $d/$who.csr -CA $d/ca.pem -CAkey $d/ca.key"
           . " -CAcreateserial -days 1 -out $d/$who.pem"
           . ($who eq 'etcd' ? " -extfile $d/san.ext" : ''));
}
ok(-s "$d/etcd.pem" && -s "$d/client.pem", 'certificates made');

my $etcd = TSEtcd->new($node{a}, tls => {
    cert => "$d/etcd.pem", key => "$d/etcd.key", ca => "$d/ca.pem",
    cacert => "$d/ca.pem", client_cert => "$d/client.pem",
    client_key => "$d/client.key" });
my $url = $etcd->url;
like($url, qr{^https://}, 'etcd serves https');

my $client = "ssl_cert=$d/client.pem ssl_key=$d/client.key";
my %sync = (
    a => "ssl_ca=$d/ca.pem $client",
    b => "ssl_ca=$d/ca.pem $client",
    c => "ssl_ca=$d/other.pem $client",
    d => "ssl_ca=$d/ca.pem",
    e => "ssl_ca=$d/ca.pem $client",
);

# node e names etcd "localhost": the certificate names 127.0.0.1 only
my $localhost = $url =~ s/127\.0\.0\.1/localhost/r;

for my $n (qw(a b c d e)) {
    my $endpoint = $n eq 'e' ? $localhost : $url;
    $node{$n}->write_config(<<"EOF");
http {
    traffic_shift_zone shift 1m;
    traffic_shift_sync $endpoint $sync{$n} node=$n timeout=1s;
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }
    server {
        listen 127.0.0.1:%%PORT_${n}_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
    $node{$n}->start;
}

sub api {
    my ($n, $method, $path, $json) = @_;
    return $node{$n}->http($method, "/traffic$path", port => "${n}_api",
                           quiet => 1, $json ? (json => $json) : ());
}

my $r = api('a', 'PATCH', '/upstreams/app',
            { weights => { blue => 60, green => 40 } });
is($r->{status}, 200, 'a write on A, through TLS') or diag($r->{body});
my $gen = $r->{json}{generation};

my $deadline = time + 3;
my $seen;
while (time < $deadline) {
    last if ($seen = api('b', 'GET', '/upstreams/app')->{json}{generation})
            == $gen;
    sleep 0.01;
}
is($seen, $gen, 'B applied it (its watch is over TLS too)');

$deadline = time + 5;
my $names = '';
while (time < $deadline) {
    my $f = api('b', 'GET', '/fleet');
    $names = join ',', map { $_->{node} } @{$f->{json}{nodes} // []};
    last if $names eq 'a,b';
    sleep 0.05;
}
is($names, 'a,b', 'GET /fleet over TLS: a and b only');

for my $case ([c => qr/certificate not trusted/, 'another CA'],
              [d => qr/tls handshake failed|connection closed/,
               'no client certificate'],
              [e => qr/the certificate does not name "localhost"/,
               'a host the certificate does not name'])
{
    my ($n, $re, $what) = @$case;
    $r = api($n, 'PATCH', '/upstreams/app',
             { weights => { blue => 0, green => 100 } });
    is($r->{status}, 503, "$what: a write answers 503");
    is($r->{json}{error}{code}, 'sync_unavailable', "$what: sync_unavailable");
    like($node{$n}->error_log, $re, "$what: the log says why");
    is(api($n, 'GET', '/upstreams/app')->{json}{weights}{blue}, 100,
       "$what: the node keeps its weights");
}

$node{$_}->allow_log(qr/traffic_shift_sync|SSL_do_handshake/) for qw(a b c d e);

done_testing();
