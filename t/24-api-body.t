#!/usr/bin/perl

# Admin API request bodies however they arrive: with a content length, in
# many chunks, spilled to a temporary file, over HTTP/2 in many DATA frames
# with and without a content length; the 64 KiB limit in each case, at the
# byte.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSH2;
use Time::HiRes qw(time);

my $t = TSTest->new(workers => 1);
$t->backend($_) for qw(blue1 green1);

$t->write_config(<<'EOF');
http {
    upstream app_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream app_green { server 127.0.0.1:%%PORT_green1%%; }

    traffic_shift app {
        pool blue  app_blue  weight=100;
        pool green app_green;
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        %%LISTEN_H2_h2%%;

        location /traffic/ { traffic_shift_api write=on; }

        location /small/ {
            traffic_shift_api write=on;
            client_body_buffer_size 1k;
        }

        location /file/ {
            traffic_shift_api write=on;
            client_body_in_file_only clean;
        }
    }
}
EOF
$t->start;

sub api { my ($m, $p, %o) = @_; $t->http($m, $p, port => 'api', %o) }
sub state { api('GET', '/traffic/upstreams/app')->{json} }

# a JSON body padded with spaces to exactly $len bytes
sub body {
    my ($pool, $len) = @_;
    my $b = qq({"active":"$pool"});
    return $b . (' ' x ($len - length($b) - 1)) . "\n";
}

sub chunked {
    my ($body, $size) = @_;
    my $out = '';
    for (my $i = 0; $i < length $body; $i += $size) {
        my $c = substr($body, $i, $size);
        $out .= sprintf("%x\r\n%s\r\n", length $c, $c);
    }
    return $out . "0\r\n\r\n";
}

my $gen = state()->{generation};
my $pool = 'blue';

# accepted: the flip happens, the generation moves by one
sub accepted {
    my ($r, $what) = @_;
    $pool = $pool eq 'blue' ? 'green' : 'blue';
    is($r->{status}, 200, "$what: 200");
    my $s = state();
    is($s->{weights}{$pool}, 100, "$what: applied");
    is($s->{generation}, ++$gen, "$what: generation +1");
}

sub refused {
    my ($r, $what) = @_;
    is($r->{status}, 413, "$what: 413");
    is($r->{json}{error}{code}, 'body_too_large', "$what: body_too_large");
    is(state()->{generation}, $gen, "$what: nothing changed");
}

my $ct = { 'Content-Type' => 'application/json' };
my $next = sub { $pool eq 'blue' ? 'green' : 'blue' };

# content length

accepted(api('PATCH', '/traffic/upstreams/app', headers => $ct,
             body => body($next->(), 65536)),
         'content length, exactly 64 KiB');
refused(api('PATCH', '/traffic/upstreams/app', headers => $ct,
            body => body($next->(), 65537)),
        'content length, 64 KiB + 1');

# a small body buffer: the body is spilled to a temporary file

my $mark = $t->log_mark;
accepted(api('PATCH', '/small/upstreams/app', headers => $ct,
             body => body($next->(), 30000)),
         'body larger than client_body_buffer_size');
like($t->error_log(since => $mark), qr/buffered to a temporary file/,
    'that body was in a temporary file');
accepted(api('PATCH', '/small/upstreams/app', headers => $ct,
             body => body($next->(), 65536)),
         'temporary file, exactly 64 KiB');
refused(api('PATCH', '/small/upstreams/app', headers => $ct,
            body => body($next->(), 65537)),
        'temporary file, 64 KiB + 1');
accepted(api('PATCH', '/file/upstreams/app', headers => $ct,
             body => body($next->(), 200)),
         'client_body_in_file_only');

# chunked: many small chunks, several buffers

my $chunked = { %$ct, 'Transfer-Encoding' => 'chunked' };
accepted(api('PATCH', '/traffic/upstreams/app', headers => $chunked,
             body => chunked(body($next->(), 40), 3)),
         'chunked, 3-byte chunks');
accepted(api('PATCH', '/traffic/upstreams/app', headers => $chunked,
             body => chunked(body($next->(), 65536), 1000)),
         'chunked, exactly 64 KiB');
refused(api('PATCH', '/traffic/upstreams/app', headers => $chunked,
            body => chunked(body($next->(), 65537), 1000)),
        'chunked, 64 KiB + 1');
refused(api('PATCH', '/traffic/upstreams/app', headers => $chunked,
            body => chunked(body($next->(), 300000), 16000)),
        'chunked, 300 KB');
accepted(api('PATCH', '/small/upstreams/app', headers => $chunked,
             body => chunked(body($next->(), 50000), 700)),
         'chunked into a temporary file');
refused(api('PATCH', '/small/upstreams/app', headers => $chunked,
            body => chunked(body($next->(), 70000), 700)),
        'chunked into a temporary file, over the limit');

# over the limit, the connection stays usable

my @s = map {
    api('PATCH', '/traffic/upstreams/app', headers => $chunked,
        body => chunked(body($next->(), 70000), 5000),
        keepalive => 1)->{status}
} 1 .. 2;
is_deeply(\@s, [413, 413], 'two 413 on one kept-alive connection');
is(api('GET', '/traffic/upstreams/app', keepalive => 1)->{status}, 200,
    'then a GET on it');

# HTTP/2: DATA frames, with and without a content length

for my $cl (1, 0) {
    my $w = $cl ? 'with' : 'without';
    my $h2 = sub {
        my ($len, $frame, $path) = @_;
        return TSH2::request(port => $t->port('h2'), method => 'PATCH',
            path => $path // '/traffic/upstreams/app',
            headers => ['content-type' => 'application/json'],
            body => body($next->(), $len), frame => $frame,
            content_length => $cl);
    };
    accepted($h2->(100, 7), "HTTP/2 $w content length, 7-byte frames");
    accepted($h2->(65536, 4096),
             "HTTP/2 $w content length, exactly 64 KiB");
    refused($h2->(65537, 4096), "HTTP/2 $w content length, 64 KiB + 1");
    refused($h2->(200000, 16384), "HTTP/2 $w content length, 200 KB");
    accepted($h2->(30000, 1000, '/small/upstreams/app'),
             "HTTP/2 $w content length, into a temporary file");
}

my $r = TSH2::request(port => $t->port('h2'), path => '/traffic/upstreams/app');
is($r->{status}, 200, 'HTTP/2 GET');
is($r->{json}{generation}, $gen, 'HTTP/2 GET: the state');

# Expect: 100-continue is answered before the body is sent

my $t0 = time;
$r = api('PATCH', '/traffic/upstreams/app',
         headers => { %$ct, 'Content-Length' => 70000,
                      'Expect' => '100-continue' });
is($r->{status}, 413, 'Expect: 100-continue with 70000 bytes: 413 at once');
ok(time - $t0 < 2, 'without waiting for the body');

done_testing();
