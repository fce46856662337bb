#!/usr/bin/perl

# Admin API, reading: the index, upstreams, health, paths relative to the
# location, ETag, HEAD, 404 and 405 answers with the JSON error object.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 blue2 green1 canary1);

$t->write_config(<<'EOF');
http {
    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%;
                          server 127.0.0.1:%%PORT_blue2%%; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%; }
    upstream app_canary { server 127.0.0.1:%%PORT_spare%% backup;
                          server 127.0.0.1:%%PORT_canary1%%;
                          server 127.0.0.1:%%PORT_off%% down; }

    traffic_shift app {
        pool blue   app_blue   weight=100;
        pool green  app_green;
        pool canary app_canary;
    }

    traffic_shift odd {
        pool blue   app_blue   weight=33.33;
        pool green  app_green  weight=12.5;
        pool canary app_canary weight=54.17;
        sticky $cookie_uid;
        route  $http_x_pool;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
        location /ro/      { traffic_shift_api; }
        location = /exact  { traffic_shift_api; }
    }
}
EOF
$t->start;

sub api { my ($m, $p, %o) = @_; $t->http($m, $p, port => 'api', %o) }

sub is_error {
    my ($r, $status, $code, $what) = @_;
    is($r->{status}, $status, "$what: $status");
    is($r->{headers}{'content-type'}, 'application/json',
        "$what: JSON content type");
    is($r->{json}{error}{status}, $status, "$what: error.status");
    is($r->{json}{error}{code}, $code, "$what: error.code $code");
    like($r->{json}{error}{text} // '', qr/\w \w/, "$what: error.text");
    like($r->{headers}{etag} // '', qr/^"\d+"$/, "$what: ETag");
}

my $iso = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;

# the index

my $r = api('GET', '/traffic/');
is($r->{status}, 200, 'GET /: 200');
is($r->{headers}{'content-type'}, 'application/json', 'GET /: JSON');
is($r->{json}{api_version}, 1, 'GET /: api_version');
is_deeply($r->{json}{upstreams}, ['app', 'odd'],
    'GET /: traffic_shift upstreams in configuration order');
is_deeply($r->{json}{health}, ['app_blue', 'app_green', 'app_canary'],
    'GET /: upstreams with tracked servers');
my $version = $r->{json}{version};
ok($version > 0, 'GET /: zone version');
is($r->{headers}{etag}, "\"$version\"", 'GET /: ETag is the zone version');

# one upstream

$r = api('GET', '/traffic/upstreams/app');
is($r->{status}, 200, 'GET /upstreams/app: 200');
my $app = $r->{json};
is($app->{name}, 'app', 'name');
is($app->{generation}, 1, 'generation 1 at start');
is($r->{headers}{etag}, '"1"', 'ETag is the generation');
is_deeply($app->{weights}, { blue => 100, green => 0, canary => 0 },
    'weights');
like($r->{body}, qr/"weights":\{"blue":100,"green":0,"canary":0\}/,
    'pools in configuration order, weights as JSON numbers');
is_deeply($app->{pools}{blue}, { upstream => 'app_blue', weight => 100,
    configured => 100, servers => 2, healthy => 2 }, 'pool blue');
is_deeply($app->{pools}{canary}, { upstream => 'app_canary', weight => 0,
    configured => 0, servers => 3, healthy => 2 },
    'pool canary: a server down in the configuration is not healthy');
ok(!$app->{sticky} && !$app->{route}, 'no sticky, no route');
is($app->{source}, 'config', 'source config');
like($app->{updated}, $iso, 'updated is ISO 8601');

$r = api('GET', '/traffic/upstreams/odd');
like($r->{body},
    qr/"weights":\{"blue":33\.33,"green":12\.5,"canary":54\.17\}/,
    'fractional weights printed as 33.33, 12.5, 54.17');
ok($r->{json}{sticky} && $r->{json}{route}, 'sticky and route flags');

my $h = api('HEAD', '/traffic/upstreams/app');
is($h->{status}, 200, 'HEAD: 200');
is($h->{body}, '', 'HEAD: no body');
is($h->{headers}{etag}, '"1"', 'HEAD: ETag');
is($h->{headers}{'content-length'},
    length(api('GET', '/traffic/upstreams/app')->{body}),
    'HEAD: the length of the GET answer');

# every upstream

$r = api('GET', '/traffic/upstreams');
is($r->{status}, 200, 'GET /upstreams: 200');
is_deeply([sort keys %{$r->{json}}], ['app', 'odd'], 'both upstreams');
is_deeply($r->{json}{app}, $app, 'same object as GET /upstreams/app');
is($r->{headers}{etag}, "\"$version\"", 'GET /upstreams: zone version');
is(api('GET', '/traffic/upstreams/')->{status}, 200,
    'a trailing slash is accepted');

# health

$r = api('GET', '/traffic/health');
is($r->{status}, 200, 'GET /health: 200');
is_deeply([sort keys %{$r->{json}}], ['app_blue', 'app_canary', 'app_green'],
    'every tracked upstream');

my $c = $r->{json}{app_canary};
is($c->{name}, 'app_canary', 'name');
ok(!$c->{health_check}, 'no health_check configured');
is($c->{live}, 2, 'two live servers');
my @s = @{$c->{servers}};
is(scalar @s, 3, 'three servers');
is_deeply([map { $_->{id} } @s], [0, 1, 2], 'ids 0..2');
is_deeply([map { $_->{address} } @s],
    ['127.0.0.1:' . $t->port('canary1'), '127.0.0.1:' . $t->port('off'),
     '127.0.0.1:' . $t->port('spare')],
    'round robin order: primary servers, then backup');
is_deeply([map { $_->{state} } @s], ['up', 'down', 'up'], 'states');
ok($s[1]{config_down} && !$s[0]{config_down}, 'config_down');
ok($s[2]{backup} && !$s[0]{backup}, 'backup');
ok(!$s[0]{admin_down}, 'not admin-down');
is($s[0]{passes}, 0, 'passes');
is($s[0]{fails}, 0, 'fails');
ok(!defined $s[0]{last_probe}, 'never probed: last_probe null');
ok(!defined $s[0]{last_error}, 'last_error null');
is_deeply($s[0]{probes}, { ok => 0, fail => 0, timeout => 0 }, 'probes');

$r = api('GET', '/traffic/health/app_canary');
is_deeply($r->{json}, $c, 'GET /health/app_canary');
$r = api('GET', '/traffic/health/app_canary/servers/2');
is_deeply($r->{json}, $s[2], 'a server by index');
$r = api('GET', '/traffic/health/app_canary/servers/127.0.0.1:'
    . $t->port('off'));
is_deeply($r->{json}, $s[1], 'a server by address');

# other locations: read-only, exact, and the API reads the same state

is_deeply(api('GET', '/ro/upstreams/app')->{json}, $app,
    'read-only location reads the same');
is(api('GET', '/exact')->{json}{api_version}, 1,
    'exact location: the index');

# not found

is_error(api('GET', '/traffic/nope'), 404, 'not_found', 'unknown path');
is_error(api('GET', '/traffic/upstreams/nope'), 404, 'unknown_upstream',
    'unknown upstream');
is_error(api('GET', '/traffic/upstreams/App'), 404, 'unknown_upstream',
    'names are case-sensitive');
is_error(api('GET', '/traffic/upstreams/app_blue'), 404, 'unknown_upstream',
    'a pool upstream is not a traffic_shift');
is_error(api('GET', '/traffic/upstreams/app/x'), 404, 'not_found',
    'below an upstream');
is_error(api('GET', '/traffic/health/nope'), 404, 'unknown_upstream',
    'health of an unknown upstream');
is_error(api('GET', '/traffic/health/app_blue/servers'), 404, 'not_found',
    'servers without an id');
is_error(api('GET', '/traffic/health/app_blue/servers/2'), 404,
    'unknown_server', 'server index out of range');
is_error(api('GET', '/traffic/health/app_blue/servers/10.0.0.1:80'), 404,
    'unknown_server', 'unknown server address');
is_error(api('GET', '/traffic/metrics/x'), 404, 'not_found',
    'below metrics');

# paths are taken as sent

is_error(api('GET', '/traffic/upstreams/a%2Fb'), 400, 'invalid_path',
    'encoded slash');
is_error(api('GET', '/traffic/upstreams/..%2Fupstreams%2Fapp'), 400,
    'invalid_path', 'encoded traversal');
is_error(api('GET', '/traffic/health/../upstreams/app'), 400,
    'invalid_path', 'dot-dot segment');
is_error(api('GET', '/traffic/./upstreams/app'), 400, 'invalid_path',
    'dot segment');
is(api('GET', '/traffic/upstreams/%61pp')->{json}{name}, 'app',
    'other encoded characters are decoded');

# methods

for my $m (qw(POST PUT DELETE OPTIONS)) {
    $r = api($m, '/traffic/upstreams/app');
    is_error($r, 405, 'method_not_allowed', "$m /upstreams/app");
    is($r->{headers}{allow}, 'GET, HEAD, PATCH', "$m: Allow");
}

for my $p ('/traffic/', '/traffic/upstreams', '/traffic/health',
           '/traffic/health/app_blue', '/traffic/metrics')
{
    $r = api('PATCH', $p, json => { active => 'blue' });
    is_error($r, 405, 'method_not_allowed', "PATCH $p");
    is($r->{headers}{allow}, 'GET, HEAD', "PATCH $p: Allow");
}

$r = api('DELETE', '/traffic/health/app_blue/servers/0');
is($r->{headers}{allow}, 'GET, HEAD, PATCH', 'DELETE a server: Allow');

# keep-alive survives an error answer (the request body was discarded)

my @k = map {
    api('POST', '/traffic/upstreams/app', body => 'x' x 1000,
        keepalive => 1)->{status}
} 1 .. 3;
is_deeply(\@k, [405, 405, 405], 'errors on one kept-alive connection');
is(api('GET', '/traffic/upstreams/app', keepalive => 1)->{status}, 200,
    'and a GET after them');

# an API without any traffic_shift: empty lists

my $e = TSTest->new(name => 'empty');
$e->write_config(<<'EOF');
http {
    server {
        listen 127.0.0.1:%%PORT_empty%%;
        location / { traffic_shift_api write=on; }
    }
}
EOF
$e->start;
$r = $e->get('/', port => 'empty');
is_deeply([$r->{json}{upstreams}, $r->{json}{health}], [[], []],
    'no traffic_shift: empty index');
is_deeply($e->get('/upstreams', port => 'empty')->{json}, {},
    'no traffic_shift: no upstreams');
is($e->get('/metrics', port => 'empty')->{status}, 200,
    'no traffic_shift: metrics');
is($e->patch('/upstreams/app', { active => 'x' }, port => 'empty')
    ->{json}{error}{code}, 'unknown_upstream',
    'no traffic_shift: PATCH names an unknown upstream');

# configuration errors

my ($rc, $out) = $t->nginx_t(<<'EOF');
http {
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { traffic_shift_api write=yes; }
    }
}
EOF
isnt($rc, 0, 'write=yes: nginx -t fails');
like($out, qr/\[emerg\] invalid parameter "write=yes".* in \S+nginx\.conf:4/,
    'write=yes: emerg with the value, file and line');

($rc, $out) = $t->nginx_t(<<'EOF');
http {
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { traffic_shift_api; traffic_shift_api write=on; }
    }
}
EOF
like($out, qr/\[emerg\] "traffic_shift_api" directive is duplicate/,
    'duplicate traffic_shift_api');

($rc, $out) = $t->nginx_t(<<'EOF');
http {
    traffic_shift_api;
}
EOF
like($out, qr/\[emerg\] "traffic_shift_api" directive is not allowed here/,
    'traffic_shift_api only in a location');

done_testing();
