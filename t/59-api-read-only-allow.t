#!/usr/bin/perl

# On a read-only API location (traffic_shift_api without write=on), a 405
# advertises only GET and HEAD in its Allow header, for every resource;
# a location with write=on still lists PATCH where it applies.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSConsistency;

my $t = TSTest->new;
$t->backend($_) for qw(blue1 green1);

$t->write_config(TSConsistency::app_conf(
    extra => 'server { listen 127.0.0.1:%%PORT_ro%%; '
        . 'location /traffic/ { traffic_shift_api; } }'));
$t->start;

sub methods {
    my ($allow) = @_;
    return [sort map { uc } split /\s*,\s*/, $allow // ''];
}

for my $path ('/traffic/upstreams/app', '/traffic/health/u_blue/servers/0',
              '/traffic/upstreams', '/traffic/')
{
    for my $method (qw(DELETE POST PUT)) {
        my $r = $t->http($method, $path, port => 'ro',
                         json => { active => 'green' });
        is($r->{status}, 405, "read-only: $method $path: 405");
        is_deeply(methods($r->{headers}{allow}), [qw(GET HEAD)],
            "read-only: $method $path: Allow lists GET, HEAD only")
            or diag("Allow: " . ($r->{headers}{allow} // 'none'));
        unlike($r->{json} && $r->{json}{error}{text} // '', qr/PATCH/,
            "read-only: $method $path: the error text does not offer PATCH");
    }
}

for my $path ('/traffic/upstreams/app', '/traffic/health/u_blue/servers/0') {
    my $r = $t->http('DELETE', $path, port => 'api');
    is($r->{status}, 405, "write=on: DELETE $path: 405");
    is_deeply(methods($r->{headers}{allow}), [qw(GET HEAD PATCH)],
        "write=on: DELETE $path: Allow lists GET, HEAD, PATCH");
}

done_testing();
