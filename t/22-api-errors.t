#!/usr/bin/perl

# Admin API, refused requests: each gets its status and the JSON error
# object with its code, and changes nothing: not the weights, not the
# generation, not the admin marks, not the zone version.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use TSTest;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 green1 green2 canary1);

$t->write_config(<<'EOF');
http {
    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%;
                          server 127.0.0.1:%%PORT_green2%%; }
    upstream app_canary { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app {
        pool blue   app_blue   weight=90;
        pool green  app_green;
        pool canary app_canary weight=10;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
        location /ro/      { traffic_shift_api write=off; }
    }
}
EOF
$t->start;

sub api { my ($m, $p, %o) = @_; $t->http($m, $p, port => 'api', %o) }

# everything a refused request must leave as it was
sub snapshot {
    my $u = api('GET', '/traffic/upstreams/app')->{json};
    my $h = api('GET', '/traffic/health')->{json};
    my $i = api('GET', '/traffic/')->{json};
    return {
        weights => $u->{weights}, generation => $u->{generation},
        source => $u->{source}, updated => $u->{updated},
        marks => { map {
            my $ups = $_;
            map { ("$ups/$_->{address}" => $_->{state}) }
                @{$h->{$ups}{servers}}
        } keys %$h },
        version => $i->{version},
    };
}

my $json = 'application/json';
my $pad = ' ' x 65536;
my $deep = '{"weights":' . ('[' x 5000) . (']' x 5000) . '}';

sub chunked {
    my ($body, $size) = @_;
    my $out = '';
    for (my $i = 0; $i < length $body; $i += $size) {
        my $c = substr($body, $i, $size);
        $out .= sprintf("%x\r\n%s\r\n", length $c, $c);
    }
    return $out . "0\r\n\r\n";
}

my @cases = (
    # name, method, path, content type, body, status, code
    ['malformed JSON', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":100}', 400, 'invalid_json'],
    ['trailing garbage', 'PATCH', 'upstreams/app', $json,
     '{"active":"green"} x', 400, 'invalid_json'],
    ['two documents', 'PATCH', 'upstreams/app', $json,
     '{"active":"green"}{"active":"blue"}', 400, 'invalid_json'],
    ['empty body', 'PATCH', 'upstreams/app', $json, '', 400, 'invalid_json'],
    ['bare string', 'PATCH', 'upstreams/app', $json, '"green"', 400,
     'invalid_json'],
    ['single quotes', 'PATCH', 'upstreams/app', $json, "{'active':'green'}",
     400, 'invalid_json'],
    ['number overflow', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"green":1e400}}', 400, 'invalid_json'],
    ['NaN', 'PATCH', 'upstreams/app', $json, '{"weights":{"green":NaN}}',
     400, 'invalid_json'],
    ['deep nesting', 'PATCH', 'upstreams/app', $json, $deep, 400,
     'invalid_json'],
    ['top-level array', 'PATCH', 'upstreams/app', $json, '[]', 400,
     'invalid_type'],
    ['weights an array', 'PATCH', 'upstreams/app', $json,
     '{"weights":[100]}', 400, 'invalid_type'],
    ['weight a string', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"green":"100"}}', 400, 'invalid_type'],
    ['weight a boolean', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"green":true}}', 400, 'invalid_type'],
    ['weight null', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"green":null,"blue":100}}', 400, 'invalid_type'],
    ['weight an object', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"green":{"v":100}}}', 400, 'invalid_type'],
    ['active a number', 'PATCH', 'upstreams/app', $json, '{"active":1}', 400,
     'invalid_type'],
    ['force a string', 'PATCH', 'upstreams/app', $json,
     '{"active":"green","force":"yes"}', 400, 'invalid_type'],
    ['unknown field', 'PATCH', 'upstreams/app', $json,
     '{"active":"green","comment":"x"}', 400, 'unknown_field'],
    ['misspelt field', 'PATCH', 'upstreams/app', $json,
     '{"weight":{"green":100}}', 400, 'unknown_field'],
    ['both weights and active', 'PATCH', 'upstreams/app', $json,
     '{"active":"green","weights":{"green":100}}', 400,
     'conflicting_fields'],
    ['nothing to change', 'PATCH', 'upstreams/app', $json, '{}', 400,
     'missing_field'],
    ['only force', 'PATCH', 'upstreams/app', $json, '{"force":true}', 400,
     'missing_field'],
    ['unknown pool in weights', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":50,"purple":50}}', 404, 'unknown_pool'],
    ['unknown active pool', 'PATCH', 'upstreams/app', $json,
     '{"active":"purple"}', 404, 'unknown_pool'],
    ['pool name case', 'PATCH', 'upstreams/app', $json, '{"active":"Green"}',
     404, 'unknown_pool'],
    ['bad pool name', 'PATCH', 'upstreams/app', $json,
     '{"active":"gr een"}', 400, 'invalid_name'],
    ['pool name with a slash', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"../blue":100}}', 400, 'invalid_name'],
    ['pool name too long', 'PATCH', 'upstreams/app', $json,
     '{"active":"' . ('g' x 33) . '"}', 400, 'invalid_name'],
    ['empty pool name', 'PATCH', 'upstreams/app', $json, '{"active":""}',
     400, 'invalid_name'],
    ['unknown upstream', 'PATCH', 'upstreams/nope', $json,
     '{"active":"green"}', 404, 'unknown_upstream'],
    ['negative weight', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":110,"green":-10}}', 400, 'invalid_weight'],
    ['negative zero decimals', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":100.5,"green":-0.5}}', 400, 'invalid_weight'],
    ['over 100', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"green":101}}', 400, 'invalid_weight'],
    ['over 100 by a hundredth', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"green":100.01}}', 400, 'invalid_weight'],
    ['three decimals', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":99.999,"green":0.001}}', 400, 'invalid_weight'],
    ['three decimals, total 100', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":33.333,"green":33.333,"canary":33.334}}', 400,
     'invalid_weight'],
    ['total 99.99', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":89.99,"canary":10}}', 400, 'invalid_total'],
    ['total 100.01', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":90.01,"canary":10}}', 400, 'invalid_total'],
    ['empty weights', 'PATCH', 'upstreams/app', $json, '{"weights":{}}', 400,
     'invalid_total'],
    ['all zero', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"blue":0,"green":0}}', 400, 'invalid_total'],
    ['duplicate pool key', 'PATCH', 'upstreams/app', $json,
     '{"weights":{"green":50,"green":50}}', 400, 'duplicate_key'],
    ['duplicate field', 'PATCH', 'upstreams/app', $json,
     '{"active":"blue","active":"green"}', 400, 'duplicate_key'],
    ['not UTF-8', 'PATCH', 'upstreams/app', $json,
     "{\"active\":\"gr\xffeen\"}", 400, 'invalid_utf8'],
    ['overlong UTF-8', 'PATCH', 'upstreams/app', $json,
     "{\"active\":\"\xc0\xafgreen\"}", 400, 'invalid_utf8'],
    ['NUL escape', 'PATCH', 'upstreams/app', $json,
     '{"active":"green\u0000"}', 400, 'invalid_json'],
    ['65 KiB body', 'PATCH', 'upstreams/app', $json,
     '{"active":"green"}' . $pad, 413, 'body_too_large'],
    ['no content type', 'PATCH', 'upstreams/app', undef,
     '{"active":"green"}', 415, 'unsupported_media_type'],
    ['text/plain', 'PATCH', 'upstreams/app', 'text/plain',
     '{"active":"green"}', 415, 'unsupported_media_type'],
    ['application/jsonx', 'PATCH', 'upstreams/app', 'application/jsonx',
     '{"active":"green"}', 415, 'unsupported_media_type'],
    ['form data', 'PATCH', 'upstreams/app',
     'application/x-www-form-urlencoded', 'active=green', 415,
     'unsupported_media_type'],
    ['read-only location', 'PATCH', '/ro/upstreams/app', $json,
     '{"active":"green"}', 403, 'read_only'],
    ['DELETE', 'DELETE', 'upstreams/app', undef, undef, 405,
     'method_not_allowed'],
    ['POST', 'POST', 'upstreams/app', $json, '{"active":"green"}', 405,
     'method_not_allowed'],
    ['PUT', 'PUT', 'upstreams/app', $json, '{"active":"green"}', 405,
     'method_not_allowed'],
    ['PATCH of the list', 'PATCH', 'upstreams', $json, '{"active":"green"}',
     405, 'method_not_allowed'],
    ['encoded slash in a name', 'PATCH', 'upstreams/app%2Fx', $json,
     '{"active":"green"}', 400, 'invalid_path'],
    ['encoded traversal', 'PATCH', 'upstreams/..%2Fupstreams%2Fapp', $json,
     '{"active":"green"}', 400, 'invalid_path'],
    ['traversal', 'PATCH', 'health/../upstreams/app', $json,
     '{"active":"green"}', 400, 'invalid_path'],
    ['encoded dots', 'PATCH', 'health/%2e%2e/upstreams/app', $json,
     '{"active":"green"}', 400, 'invalid_path'],
    ['dot segment', 'PATCH', 'upstreams/./app', $json, '{"active":"green"}',
     400, 'invalid_path'],
    ['encoded NUL', 'PATCH', 'upstreams/app%00', $json,
     '{"active":"green"}', 400, undef],
    ['server: unknown field', 'PATCH', 'health/app_green/servers/0', $json,
     '{"down":true,"reason":"maintenance"}', 400, 'unknown_field'],
    ['server: down a string', 'PATCH', 'health/app_green/servers/0', $json,
     '{"down":"true"}', 400, 'invalid_type'],
    ['server: no down', 'PATCH', 'health/app_green/servers/0', $json, '{}',
     400, 'missing_field'],
    ['server: unknown index', 'PATCH', 'health/app_green/servers/2', $json,
     '{"down":true}', 404, 'unknown_server'],
    ['server: unknown address', 'PATCH',
     'health/app_green/servers/127.0.0.1:1', $json, '{"down":true}', 404,
     'unknown_server'],
    ['server: unknown upstream', 'PATCH', 'health/nope/servers/0', $json,
     '{"down":true}', 404, 'unknown_upstream'],
    ['server: read-only', 'PATCH', '/ro/health/app_green/servers/0', $json,
     '{"down":true}', 403, 'read_only'],
);

my $before = snapshot();
is($before->{generation}, 1, 'start: generation 1');

my $n = 0;
for my $c (@cases) {
    my ($name, $method, $path, $type, $body, $status, $code) = @$c;
    $path = "/traffic/$path" unless $path =~ m{^/};
    my %h;
    $h{'Content-Type'} = $type if defined $type;
    my $r = api($method, $path, headers => \%h,
                defined $body ? (body => $body) : ());
    is($r->{status}, $status, "$name: $status");
    if (defined $code) {
        is($r->{json}{error}{code}, $code, "$name: code $code");
        is($r->{json}{error}{status}, $status, "$name: error.status");
        like($r->{json}{error}{text} // '', qr/\w \w/, "$name: error.text");
        is($r->{headers}{'content-type'}, 'application/json',
            "$name: JSON");
    }
    is_deeply(snapshot(), $before, "$name: nothing changed");
    $n++;
}
ok($n >= 30, "$n refused requests");

# the same bodies over chunked transfer encoding

for my $c (['chunked 65 KiB', '{"active":"green"}' . $pad, 413,
            'body_too_large'],
           ['chunked trailing garbage', '{"active":"green"} x', 400,
            'invalid_json'],
           ['chunked duplicate key', '{"active":"blue","active":"green"}',
            400, 'duplicate_key'])
{
    my ($name, $body, $status, $code) = @$c;
    my $r = api('PATCH', '/traffic/upstreams/app',
                headers => { 'Content-Type' => $json,
                             'Transfer-Encoding' => 'chunked' },
                body => chunked($body, 4000));
    is($r->{status}, $status, "$name: $status");
    is($r->{json}{error}{code}, $code, "$name: $code");
    is_deeply(snapshot(), $before, "$name: nothing changed");
}

# If-Match that does not match

my $r = api('PATCH', '/traffic/upstreams/app',
            headers => { 'Content-Type' => $json, 'If-Match' => '"7"' },
            body => '{"active":"green"}');
is($r->{status}, 412, 'stale If-Match: 412');
is($r->{json}{error}{code}, 'precondition_failed', 'stale If-Match: code');
is_deeply(snapshot(), $before, 'stale If-Match: nothing changed');

# a flip to a pool whose servers are all admin-down: 409, then with force

for my $i (0, 1) {
    $r = api('PATCH', "/traffic/health/app_green/servers/$i",
             json => { down => JSON::PP::true });
    is($r->{status}, 200, "green server $i admin-down");
}
$before = snapshot();

$r = api('PATCH', '/traffic/upstreams/app', json => { active => 'green' });
is($r->{status}, 409, 'flip to an all admin-down pool: 409');
is($r->{json}{error}{code}, 'pool_unavailable', '409: pool_unavailable');
is_deeply(snapshot(), $before, '409: nothing changed');

$r = api('PATCH', '/traffic/upstreams/app',
         json => { weights => { blue => 95, green => 5 } });
is($r->{status}, 409, '5% to it: 409');
is_deeply(snapshot(), $before, '409: nothing changed');

$r = api('PATCH', '/traffic/upstreams/app',
         json => { active => 'green', force => JSON::PP::true });
is($r->{status}, 200, 'the same flip with force: 200');
is($r->{json}{generation}, $before->{generation} + 1, 'force: generation +1');
$t->allow_log(qr/no live server|no weighted pool has a live server/);

# a worker never crashed on the way

is(scalar(() = $t->error_log =~ /exited on signal/g), 0, 'no worker crashed');

done_testing();
