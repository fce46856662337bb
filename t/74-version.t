#!/usr/bin/perl

# The release version (NGX_HTTP_TS_VERSION in src/ngx_http_traffic_shift.h)
# as the module reports it: "module_version" in GET / of the API and a
# notice when nginx starts; and as the CLI reports it (--version).  make
# dist-check runs this file from the unpacked release tarball, against the
# module built from it.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSCli qw(run_capture $CLI $ROOT);
use JSON::PP ();

my $header = "$ROOT/src/ngx_http_traffic_shift.h";
open(my $fh, '<', $header) or die "$header: $!";
my ($version) = map { /^#define NGX_HTTP_TS_VERSION\s+"([^"]+)"/ ? $1 : () }
                <$fh>;
close $fh;
ok(defined $version && $version =~ /^\d+\.\d+\.\d+/,
   "NGX_HTTP_TS_VERSION is a version: " . ($version // 'none'));
$version //= '';

# an expected version from outside (make dist-check: the checkout's)
is($version, $ENV{TS_EXPECT_VERSION}, 'the version expected')
    if $ENV{TS_EXPECT_VERSION};

my $t = TSTest->new(workers => 1);
$t->backend('blue1');

$t->write_config(<<'EOF');
http {
    upstream u_blue { server 127.0.0.1:%%PORT_blue1%%; }

    traffic_shift app {
        pool blue u_blue weight=100;
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api; }
    }
}
EOF
$t->start;

my $r = $t->http('GET', '/traffic/', port => 'api');
is($r->{status}, 200, 'GET /: 200');
my $index = eval { JSON::PP->new->decode($r->{body}) } // {};
is($index->{module_version}, $version, "GET /: module_version $version");
is($index->{api_version}, 1, 'GET /: api_version stays 1');
like($index->{version}, qr/^\d+$/, 'GET /: version is the zone counter');

like($t->error_log, qr/\[notice\] .*traffic_shift module \Q$version\E$/m,
     'a notice with the version when nginx starts');

my $c = run_capture({ dir => $t->testdir }, $CLI, '--version');
is($c->{rc}, 0, 'traffic-shift --version: exit 0');
is($c->{out}, "traffic-shift $version\n", 'traffic-shift --version');
$c = run_capture({ dir => $t->testdir }, $CLI, '-V');
is($c->{out}, "traffic-shift $version\n", 'traffic-shift -V');

$t->stop;

done_testing();
