#!/usr/bin/perl

# The module loads into nginx; nginx with it serves a plain proxied
# upstream; configuration errors fail "nginx -t" naming file and line.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $t = TSTest->new(workers => 2);
$t->backend('blue1');

my ($rc, $out) = $t->nginx_t(<<'EOF');
%%LOAD_MODULE%%
http {
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { return 200 "ok\n"; }
    }
}
EOF
is($rc, 0, 'nginx -t passes with the module loaded')
    or diag($out);
like($out, qr/test is successful/, 'nginx -t reports success');

$t->write_config(<<'EOF');
%%LOAD_MODULE%%
http {
    upstream plain {
        server 127.0.0.1:%%PORT_blue1%%;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://plain; }
    }
}
EOF
if (TSTest->static) {
    unlike($t->config, qr/load_module/,
        'TS_STATIC: no load_module line, the module is compiled in');
} else {
    like($t->config, qr/^load_module \Q${\ $t->module_path }\E;$/m,
        'load_module line uses the absolute module path');
}

$t->start;
is($t->worker_count, 2, 'two workers running');

my $r = $t->get('/');
is($r->{status}, 200, 'proxied request: 200');
is($r->{body}, "blue1\n", 'proxied request: body from the backend');
is($r->{headers}{'x-backend'}, 'blue1', 'proxied request: X-Backend');

my $direct = $t->get('/', port => 'blue1');
is($direct->{body}, "blue1\n", 'backend answers directly');

$t->stop;
ok(!$t->is_running, 'nginx stopped');
like($t->error_log, qr/\[notice\].*exiting/, 'error log written');

# failure paths: an unknown directive is an [emerg] with file and line

($rc, $out) = $t->nginx_t(<<'EOF');
%%LOAD_MODULE%%
http {
    server {
        listen 127.0.0.1:%%PORT_main%%;
        no_such_directive on;
    }
}
EOF
isnt($rc, 0, 'nginx -t fails on an unknown directive');
like($out,
    qr/\[emerg\] unknown directive "no_such_directive" in \S*\/nginx\.conf:5/,
    'emerg names the directive, file and line');
like($out, qr/test failed/, 'nginx -t reports failure');

# a template without %%LOAD_MODULE%% gets the module loaded anyway,
# on line 1, without moving the template's line numbers
($rc, $out) = $t->nginx_t(<<'EOF');
http {
    bogus_directive;
}
EOF
like($out, qr/unknown directive "bogus_directive" in \S*\/nginx\.conf:2/,
    'line numbers of the template are kept');
if (TSTest->static) {
    like($t->read_file('nginx.conf'), qr/^http \{/,
        'TS_STATIC: nothing added on line 1');
} else {
    like($t->read_file('nginx.conf'), qr/^load_module \S+\.so; http \{/,
        'load_module added on line 1');
}

done_testing();
