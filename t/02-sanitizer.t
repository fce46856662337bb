#!/usr/bin/perl

# Under "make asan" (TS_SANITIZE=1): the module is built with the
# sanitizers and nginx's workers really run with their runtimes, so that a
# clean run of the suite means something.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

plan skip_all => 'only under make asan (TS_SANITIZE=1)'
    unless $ENV{TS_SANITIZE};

my $t = TSTest->new(workers => 1);
$t->backend('blue1');

open(my $fh, '<:raw', $t->module_path) or die "$t->{module_path}: $!";
my $so = do { local $/; <$fh> };
close $fh;
like($so, qr/__asan_report_load/, 'module is built with AddressSanitizer');
like($so, qr/__ubsan_handle_/, 'module is built with UBSan');

$t->write_config(<<'EOF');
http {
    upstream u_blue { server 127.0.0.1:%%PORT_blue1%%; }
    traffic_shift app { pool blue u_blue weight=100; }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }
}
EOF
$t->start;

is($t->get('/')->{status}, 200, 'proxied through the module');

my ($worker) = $t->worker_pids;
open($fh, '<', "/proc/$worker/maps") or die "maps of $worker: $!";
my $maps = do { local $/; <$fh> };
close $fh;
like($maps, qr{/libasan\.so}, 'worker runs with the ASan runtime');
like($maps, qr{/libubsan\.so}, 'worker runs with the UBSan runtime');

done_testing();
