#!/usr/bin/perl

# If-Match on every writable resource: of two writers sending the same
# ETag, exactly one gets 200 and moves the ETag, the other gets 412, also
# when the change is a no-op (a server set up that is up, the same weights
# again).

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSConsistency;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 green1);

$t->write_config(TSConsistency::app_conf());
$t->start;

sub api {
    my ($method, $path, $json, $etag) = @_;
    return $t->http($method, "/traffic$path", port => 'api',
        $json ? (json => $json) : (),
        $etag ? (headers => { 'If-Match' => $etag }) : ());
}

# two writers read the same ETag, then both send their change with it
sub race {
    my ($what, $path, $body) = @_;

    my $etag = api('GET', $path)->{headers}{etag};
    ok(defined $etag, "$what: GET has an ETag");

    my $first = api('PATCH', $path, $body, $etag);
    my $second = api('PATCH', $path, $body, $etag);

    is($first->{status}, 200, "$what: the first writer gets 200");
    isnt($first->{headers}{etag}, $etag, "$what: and the ETag moves")
        or diag("ETag $etag before and after");
    is($second->{status}, 412, "$what: the second writer gets 412")
        or diag("got $second->{status}: $second->{body}");
    is($second->{json} && $second->{json}{error}{code},
       'precondition_failed', "$what: precondition_failed");
    isnt(api('GET', $path)->{headers}{etag}, $etag,
         "$what: GET shows the moved ETag");
}

my $server = '/health/u_green/servers/0';

race('server set up while up (no-op)', $server, { down => JSON::PP::false });
race('server set admin-down', $server, { down => JSON::PP::true });
race('server set admin-down again (no-op)', $server,
     { down => JSON::PP::true });
race('server back up', $server, { down => JSON::PP::false });

race('upstream: the current weights again (no-op)', '/upstreams/app',
     { weights => { blue => 100, green => 0 } });
race('upstream: new weights', '/upstreams/app',
     { weights => { blue => 90, green => 10 } });
race('upstream: active blue', '/upstreams/app', { active => 'blue' });

done_testing();
