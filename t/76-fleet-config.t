#!/usr/bin/perl

# traffic_shift_sync: every invalid value fails "nginx -t" with an [emerg]
# naming it, the file and the line ("# HERE" marks it); a valid one is
# accepted.  No etcd is needed: nothing connects at configuration time.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $t = TSTest->new();
$t->backend('blue1');

sub wrap {
    my ($sync) = @_;
    return <<"EOF";
http {
    upstream u_blue { server 127.0.0.1:%%PORT_blue1%%; }
    traffic_shift app { pool blue u_blue weight=100; }
$sync
}
EOF
}

my @cases = (
    [ 'https endpoint without a CA',
      'traffic_shift_sync https://127.0.0.1:2379; # HERE',
      qr/"https:\/\/" endpoints of traffic_shift_sync need ssl_ca=FILE/ ],
    [ 'a CA without https',
      'traffic_shift_sync http://127.0.0.1:2379 ssl_ca=/etc/hostname; # HERE',
      qr/ssl_ca=, ssl_cert= and ssl_key= of traffic_shift_sync need an "https:\/\/" endpoint/ ],
    [ 'a CA file that is not there',
      'traffic_shift_sync https://127.0.0.1:2379 ssl_ca=/nonexistent.pem; # HERE',
      qr/cannot load ssl_ca="\/nonexistent\.pem" of traffic_shift_sync/ ],
    [ 'a client certificate without its key',
      'traffic_shift_sync https://127.0.0.1:2379 ssl_ca=/etc/hostname '
      . 'ssl_cert=/etc/hostname; # HERE',
      qr/ssl_cert= and ssl_key= of traffic_shift_sync go together/ ],
    [ 'an empty CA',
      'traffic_shift_sync https://127.0.0.1:2379 ssl_ca=; # HERE',
      qr/empty file in "ssl_ca=" of traffic_shift_sync/ ],
    [ 'no scheme',
      'traffic_shift_sync 127.0.0.1:2379; # HERE',
      qr/invalid parameter "127\.0\.0\.1:2379" in traffic_shift_sync/ ],
    [ 'unknown parameter',
      'traffic_shift_sync http://127.0.0.1:2379 ttl=5; # HERE',
      qr/invalid parameter "ttl=5" in traffic_shift_sync/ ],
    [ 'endpoint with a path',
      'traffic_shift_sync http://127.0.0.1:2379/v3; # HERE',
      qr/invalid etcd endpoint "http:\/\/127\.0\.0\.1:2379\/v3"/ ],
    [ 'endpoint with a bad port',
      'traffic_shift_sync http://127.0.0.1:99999; # HERE',
      qr/invalid etcd endpoint "http:\/\/127\.0\.0\.1:99999" in traffic_shift_sync: invalid port/ ],
    [ 'empty endpoint',
      'traffic_shift_sync http://; # HERE',
      qr/invalid parameter "http:\/\/" in traffic_shift_sync/ ],
    [ 'no endpoint',
      'traffic_shift_sync prefix=/ts/; # HERE',
      qr/traffic_shift_sync needs at least one etcd endpoint/ ],
    [ 'prefix without its slashes',
      'traffic_shift_sync http://127.0.0.1:2379 prefix=ts; # HERE',
      qr/invalid prefix "ts" in traffic_shift_sync/ ],
    [ 'prefix without the last slash',
      'traffic_shift_sync http://127.0.0.1:2379 prefix=/ts; # HERE',
      qr/invalid prefix "\/ts" in traffic_shift_sync/ ],
    [ 'empty node',
      'traffic_shift_sync http://127.0.0.1:2379 node=; # HERE',
      qr/invalid node "" in traffic_shift_sync/ ],
    [ 'node with a slash',
      'traffic_shift_sync http://127.0.0.1:2379 node=a/b; # HERE',
      qr/invalid node "a\/b" in traffic_shift_sync/ ],
    [ 'bad timeout',
      'traffic_shift_sync http://127.0.0.1:2379 timeout=soon; # HERE',
      qr/invalid timeout "soon" in traffic_shift_sync/ ],
    [ 'zero timeout',
      'traffic_shift_sync http://127.0.0.1:2379 timeout=0; # HERE',
      qr/invalid timeout "0" in traffic_shift_sync/ ],
    [ 'bad keepalive',
      'traffic_shift_sync http://127.0.0.1:2379 keepalive=301s; # HERE',
      qr/invalid keepalive "301s" in traffic_shift_sync/ ],
    [ 'duplicate',
      "traffic_shift_sync http://127.0.0.1:2379;\n"
      . 'traffic_shift_sync http://127.0.0.1:2380; # HERE',
      qr/"traffic_shift_sync" directive is duplicate/ ],
    [ 'outside http',
      undef,
      qr/"traffic_shift_sync" directive is not allowed here/ ],
);

for my $case (@cases) {
    my ($name, $sync, $re) = @$case;
    my $conf = defined $sync ? wrap($sync)
        : "traffic_shift_sync http://127.0.0.1:2379; # HERE\n" . wrap('');
    my @lines = split /\n/, $conf;
    my ($line) = grep { $lines[$_ - 1] =~ /# HERE/ } 1 .. @lines;
    my ($rc, $out) = $t->nginx_t($conf);
    isnt($rc, 0, "$name: nginx -t fails");
    like($out, qr/\[emerg\] $re.* in \S+\/nginx\.conf:$line\b/,
        "$name: emerg names it at nginx.conf:$line")
        or diag($out);
}

my ($rc, $out) = $t->nginx_t(wrap(
    'traffic_shift_sync http://127.0.0.1:2379 http://localhost:2381/ '
    . 'prefix=/prod/traffic/ node=edge-1.example timeout=500ms '
    . 'keepalive=0;'));
is($rc, 0, 'several endpoints, prefix, node, timeout and keepalive are '
    . 'accepted')
    or diag($out);

done_testing();
