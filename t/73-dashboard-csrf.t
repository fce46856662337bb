#!/usr/bin/perl

# Changes from another site's page are refused: a write that a browser
# sends (it has Origin or Sec-Fetch-Site) needs the X-Traffic-Shift header,
# which a foreign page cannot add without a CORS preflight that the API
# never approves, and a Sec-Fetch-Site other than same-origin is refused
# outright; 403 "cross_site", nothing changed.  Scripts, which send
# neither, work as before.

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

my $up = '/traffic/upstreams/app';
my $own = 'http://127.0.0.1:' . $t->port('api');

sub generation {
    return $t->get($up, port => 'api', quiet => 1)->{json}{generation};
}

sub version {
    return $t->get('/traffic/', port => 'api', quiet => 1)->{json}{version};
}

sub refused {
    my ($r, $what) = @_;
    is($r->{status}, 403, "$what: 403");
    is($r->{json} && $r->{json}{error}{code}, 'cross_site',
       "$what: error cross_site")
        or diag($r->{body});
    is($r->{headers}{'access-control-allow-origin'}, undef,
       "$what: no CORS approval");
}

my $gen = generation();
my $version = version();

# a foreign page: Origin of another site, no custom header
my $r = $t->patch($up, { active => 'green' }, port => 'api',
                  headers => { Origin => 'http://evil.example' });
refused($r, 'Origin of another site, no X-Traffic-Shift');
like($r->{json}{error}{text}, qr/X-Traffic-Shift/,
     'the error says what is missing');

$r = $t->patch($up, { active => 'green' }, port => 'api',
               headers => { 'Sec-Fetch-Site' => 'cross-site',
                            'X-Traffic-Shift' => '1',
                            Origin => 'http://evil.example' });
refused($r, 'Sec-Fetch-Site: cross-site, even with the header');
like($r->{json}{error}{text}, qr/another site/, 'in plain words');

$r = $t->patch($up, { active => 'green' }, port => 'api',
               headers => { 'Sec-Fetch-Site' => 'same-site',
                            'X-Traffic-Shift' => '1' });
refused($r, 'Sec-Fetch-Site: same-site (another port)');

$r = $t->patch($up, { active => 'green' }, port => 'api',
               headers => { 'Sec-Fetch-Site' => 'same-origin',
                            Origin => $own });
refused($r, 'same origin without the header');

$r = $t->http('PATCH', '/traffic/health/u_blue/servers/0', port => 'api',
              json => { down => JSON::PP::true },
              headers => { Origin => 'http://evil.example' });
refused($r, 'drain from another site');

$r = $t->put("$up/rollout", { pool => 'green', baseline => ['blue'],
                              steps => [10, 100] }, port => 'api',
             headers => { Origin => 'http://evil.example' });
refused($r, 'rollout start from another site');

$r = $t->delete("$up/rollout", port => 'api',
                headers => { 'Sec-Fetch-Site' => 'cross-site' });
refused($r, 'rollout DELETE from another site');

# a form of another site: text/plain, no header
$r = $t->http('POST', "$up/rollout", port => 'api',
              body => '{"pool":"green","baseline":["blue"],"steps":[100]}',
              headers => { 'Content-Type' => 'text/plain',
                           Origin => 'http://evil.example',
                           'Sec-Fetch-Site' => 'cross-site' });
refused($r, 'a form post of another site');

is(generation(), $gen, 'nothing changed: the same generation');
is(version(), $version, 'nothing changed: the same zone version');
is($t->get($up, port => 'api')->{json}{weights}{blue}, 100,
   'nothing changed: the weights');
is($t->get('/traffic/health/u_blue/servers/0', port => 'api')
   ->{json}{admin_down}, JSON::PP::false, 'nothing changed: the server');

# the preflight a foreign page needs for the header: never approved
$r = $t->http('OPTIONS', $up, port => 'api',
              headers => { Origin => 'http://evil.example',
                           'Access-Control-Request-Method' => 'PATCH',
                           'Access-Control-Request-Headers' =>
                               'content-type,if-match,x-traffic-shift' });
isnt($r->{status} >= 200 && $r->{status} < 300, 1,
     "OPTIONS preflight: not a success ($r->{status})");
is(scalar(grep { /^access-control-/i } keys %{$r->{headers}}), 0,
   'OPTIONS preflight: no Access-Control-* header');

# reads carry no CORS approval either: another site cannot read them
$r = $t->get($up, port => 'api',
             headers => { Origin => 'http://evil.example' });
is($r->{status}, 200, 'a read with Origin: 200');
is($r->{headers}{'access-control-allow-origin'}, undef,
   'a read: no CORS approval');

# the status page itself: same origin, with the header
$r = $t->patch($up, { active => 'green' }, port => 'api',
               headers => { 'Sec-Fetch-Site' => 'same-origin',
                            Origin => $own, 'X-Traffic-Shift' => '1',
                            'If-Match' => qq{"$gen"} });
is($r->{status}, 200, 'same origin with X-Traffic-Shift: 200');
is($r->{json}{weights}{green}, 100, 'the change is made');

$r = $t->http('PATCH', '/traffic/health/u_blue/servers/0', port => 'api',
              json => { down => JSON::PP::true },
              headers => { 'Sec-Fetch-Site' => 'same-origin',
                           'X-Traffic-Shift' => '1' });
is($r->{status}, 200, 'drain from the page: 200');

# Sec-Fetch-Site: none (typed by the user) with the header
$r = $t->http('PATCH', '/traffic/health/u_blue/servers/0', port => 'api',
              json => { down => JSON::PP::false },
              headers => { 'Sec-Fetch-Site' => 'none',
                           'X-Traffic-Shift' => '1' });
is($r->{status}, 200, 'Sec-Fetch-Site: none with the header: 200');

# scripts: no Origin, no Sec-Fetch-Site, no header, as before
$r = $t->patch($up, { active => 'blue' }, port => 'api');
is($r->{status}, 200, 'curl-like PATCH: 200');
is($r->{json}{weights}{blue}, 100, 'curl-like PATCH: changed');

# a read-only location stays read-only, whatever the headers
$r = $t->patch($up, { active => 'green' }, port => 'ro',
               headers => { 'Sec-Fetch-Site' => 'same-origin',
                            'X-Traffic-Shift' => '1' });
is($r->{status}, 403, 'read-only location, from the page: 403');
is($r->{json}{error}{code}, 'read_only', 'read-only location: read_only');
is($t->get($up, port => 'api')->{json}{weights}{blue}, 100,
   'read-only location: nothing changed');

done_testing();
