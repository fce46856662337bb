#!/usr/bin/perl

# What a probe sends and how it reads: method=HEAD and header= reach a
# backend that demands them; responses framed by Content-Length or chunked
# encoding, written in small pieces with pauses, are matched by body=
# across reads and chunk boundaries within their first 64 KiB, and the
# connection is kept; HEAD and 204 have no body; a response without
# framing is read to the end and its connection not kept; a truncated or
# badly chunked body fails.  Bad parameter values fail "nginx -t" with the
# file, line and value.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSProbe;

my $t = TSTest->new;
my $be = TSTest->new(module => 0, name => 'be');
$be->port($_) for qw(head hdr);

$be->write_config(<<'EOF');
http {
    log_format probe '$server_port "$request" $status $connection';
    access_log %%TESTDIR%%/probe.log probe;
    server {
        listen 127.0.0.1:%%PORT_head%%;
        location / {
            if ($request_method != HEAD) { return 403; }
            return 200 "ok\n";
        }
    }
    server {
        listen 127.0.0.1:%%PORT_hdr%%;
        location / {
            set $ok "$http_x_probe_token:$http_x_two";
            if ($ok != "s3cret value:2") { return 403; }
            return 200 "ok\n";
        }
    }
}
EOF
$be->start;

my $marker = 'status: healthy';
my $pad = join '', map { sprintf "%07d\n", $_ } 1 .. 2560;       # 20 KiB
# 40 KiB; the marker at 20480, where a 1 KiB chunk starts
my $body = $pad . "$marker\n" . $pad;

# a response cut in pieces of $n bytes, whatever they cut
sub pieces {
    my ($n, @parts) = @_;
    return [TSProbe::cut(join('', @parts), $n)];
}

my %answer = (
    chunked => sub {
        my $head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        return (pieces(1500, $head,
                       TSProbe::chunked(TSProbe::cut($body, 1024))), 0);
    },
    length => sub {
        return (pieces(1200, "HTTP/1.1 200 OK\r\nContent-Length: "
                       . length($body) . "\r\n\r\n", $body), 0);
    },
    eof => sub {
        return (pieces(4000, "HTTP/1.1 200 OK\r\n\r\n", $body), 1);
    },
    far => sub {
        my $b = ('x' x 70000) . $marker;
        return (pieces(16000, "HTTP/1.1 200 OK\r\nContent-Length: "
                       . length($b) . "\r\n\r\n", $b), 0);
    },
    head_cl => sub {
        my ($req) = @_;
        return (["HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"], 0)
            if $req->{method} ne 'HEAD';
        return (["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"], 0);
    },
    nocontent => sub {
        return (["HTTP/1.1 204 No Content\r\n\r\n"], 0);
    },
    trunc => sub {
        return (["HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                 "0123456789"], 1);
    },
    badchunk => sub {
        return (["HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                 "zz\r\nok\r\n0\r\n\r\n"], 0);
    },
);

TSProbe::serve($t, $_, $answer{$_}, pause => 0.005) for sort keys %answer;

$t->write_config(<<'EOF');
http {
    upstream head {
        server 127.0.0.1:%%PORT_head%%;
        health_check uri=/head method=HEAD interval=150ms;
    }
    upstream hdr {
        server 127.0.0.1:%%PORT_hdr%%;
        health_check uri=/hdr header="X-Probe-Token: s3cret value"
                     header=X-Two:2 interval=150ms;
    }
    upstream head_no {
        server 127.0.0.1:%%PORT_head%%;
        health_check uri=/head_no interval=150ms;
    }
    upstream hdr_no {
        server 127.0.0.1:%%PORT_hdr%%;
        health_check uri=/hdr_no "header=X-Probe-Token: wrong" interval=150ms;
    }
    upstream chunked {
        server 127.0.0.1:%%PORT_chunked%%;
        health_check uri=/c "body=0002560\nstatus: healthy\n0000001\n"
                     interval=300ms;
    }
    upstream length {
        server 127.0.0.1:%%PORT_length%%;
        health_check uri=/l "body=status: healthy\n0000001" interval=300ms;
    }
    upstream eof {
        server 127.0.0.1:%%PORT_eof%%;
        health_check uri=/e "body=status: healthy" interval=300ms;
    }
    upstream far {
        server 127.0.0.1:%%PORT_far%%;
        health_check uri=/f "body=status: healthy" interval=300ms;
    }
    upstream head_cl {
        server 127.0.0.1:%%PORT_head_cl%%;
        health_check uri=/h method=HEAD interval=150ms;
    }
    upstream nocontent {
        server 127.0.0.1:%%PORT_nocontent%%;
        health_check uri=/n status=204 interval=150ms;
    }
    upstream trunc {
        server 127.0.0.1:%%PORT_trunc%%;
        health_check uri=/t interval=150ms;
    }
    upstream badchunk {
        server 127.0.0.1:%%PORT_badchunk%%;
        health_check uri=/b interval=150ms;
    }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /traffic/ { traffic_shift_api; }
    }
}
EOF
$t->start;

sub server {
    my ($ups) = @_;
    my $r = $t->get("/traffic/health/$ups");
    return (($r->{json} && $r->{json}{servers}) || [])->[0] // {};
}

sub probes {
    my ($ups) = @_;
    my $p = server($ups)->{probes} // {};
    my $n = 0;
    $n += $p->{$_} // 0 for qw(ok fail timeout);
    return $n;
}

my @all = qw(head hdr head_no hdr_no chunked length eof far head_cl
             nocontent trunc badchunk);

ok($t->wait_for(sub { !grep { probes($_) < 4 } @all },
                timeout => 20, what => 'four probes of each'),
   'every upstream probed four times');

my %want = (
    head => ['up'],
    hdr => ['up'],
    head_no => ['down', qr/^status 403$/],
    hdr_no => ['down', qr/^status 403$/],
    chunked => ['up'],
    length => ['up'],
    eof => ['up'],
    far => ['down', qr/^body mismatch$/],
    head_cl => ['up'],
    nocontent => ['up'],
    trunc => ['down', qr/^incomplete response body$/],
    badchunk => ['down', qr/^bad chunked body$/],
);

for my $ups (@all) {
    my ($state, $err) = @{$want{$ups}};
    my $s = server($ups);
    is($s->{state}, $state, "$ups: $state") or diag(explain $s);

    if ($err) {
        like($s->{last_error} // '', $err, "$ups: last_error $err");
    } else {
        is($s->{probes}{fail}, 0, "$ups: no probe failed")
            or diag(explain $s);
    }
}

# the connections the probes used

my $p = probes('chunked');
is(TSProbe::accepts($t, 'chunked'), 1,
   "chunked: one connection for $p probes");
$p = probes('length');
is(TSProbe::accepts($t, 'length'), 1,
   "Content-Length: one connection for $p probes");
$p = probes('head_cl');
is(TSProbe::accepts($t, 'head_cl'), 1,
   "HEAD with Content-Length and no body: one connection for $p probes");
$p = probes('nocontent');
is(TSProbe::accepts($t, 'nocontent'), 1,
   "204: one connection for $p probes");
ok(TSProbe::accepts($t, 'eof') >= 4,
   'read to the end: a connection per probe');
ok(TSProbe::accepts($t, 'trunc') >= 4 && TSProbe::accepts($t, 'badchunk') >= 4,
   'failed probes: the connection is not kept');

my ($req) = grep { / \/h HTTP/ } TSProbe::requests($t, 'head_cl');
like($req // '', qr/^\d+ \d+ HEAD \/h HTTP\/1\.1$/, 'HEAD /h HTTP/1.1 sent');

my $hreqs = $be->read_file('probe.log') // '';
like($hreqs, qr/"GET \/hdr HTTP\/1\.1" 200/, 'headers reach the backend');
like($hreqs, qr/"HEAD \/head HTTP\/1\.1" 200/, 'HEAD reaches the backend');

# bad values: nginx -t names the value, the file and the line

my $c = TSTest->new(name => 'conf');
$c->port('b1');

sub conf {
    my ($hc) = @_;
    return <<"EOF";
http {
    upstream app { server 127.0.0.1:%%PORT_b1%%; $hc }
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }
}
EOF
}

my $dir = $c->testdir;
$c->write_file('ca.pem', '');

my @good = (
    'health_check method=HEAD keepalive=off;',
    'health_check method=GET keepalive=on header="X-A: b c" '
        . '"header=X-B: d" header=X-C:e;',
    'health_check type=https ssl_verify=off ssl_server_name=off '
        . 'ssl_protocols=TLSv1.2,TLSv1.3 ssl_ciphers=HIGH:!aNULL '
        . 'ssl_name=backend.test;',
);

for my $hc (@good) {
    my ($rc, $out) = $c->nginx_t(conf($hc));
    is($rc, 0, "accepted: $hc") or diag($out);
}

my @bad = (
    ['health_check method=POST;',
        qr/invalid health_check method "method=POST"/],
    ['health_check keepalive=yes;',
        qr/invalid health_check keepalive "keepalive=yes"/],
    ['health_check header=NoColon;',
        qr/invalid health_check header "header=NoColon"/],
    ['health_check "header=Bad Name: x";',
        qr/invalid health_check header "header=Bad Name: x"/],
    ['health_check "header=Host: other";',
        qr/health_check header "header=Host: other" is not allowed/],
    ['health_check header="X-Open: never closed;',
        qr/unterminated quote in health_check parameter "header="X-Open:"/],
    ['health_check type=tcp method=HEAD;',
        qr/health_check parameter "method" is not allowed with type=tcp/],
    ['health_check type=tcp keepalive=off;',
        qr/health_check parameter "keepalive" is not allowed with type=tcp/],
    ['health_check ssl_verify=on;',
        qr/health_check parameter "ssl_verify" requires type=https/],
    ['health_check type=https ssl_verify=maybe;',
        qr/invalid health_check parameter "ssl_verify=maybe", expected on or off/],
    ['health_check type=https ssl_server_name=1;',
        qr/invalid health_check parameter "ssl_server_name=1"/],
    ['health_check type=https ssl_protocols=TLSv9;',
        qr/invalid health_check ssl_protocols "ssl_protocols=TLSv9"/],
    ['health_check type=https ssl_protocols=TLSv1.2,;',
        qr/invalid health_check ssl_protocols "ssl_protocols=TLSv1.2,"/],
    ['health_check type=https ssl_name=a/b;',
        qr/invalid health_check ssl_name "ssl_name=a\/b"/],
    ['health_check type=https ssl_ciphers=;',
        qr/invalid health_check ssl_ciphers "ssl_ciphers="/],
    ['health_check type=https ssl_certificate=/x/c.pem;',
        qr/health_check ssl_certificate="\/x\/c.pem" needs ssl_certificate_key=/],
    ['health_check type=https ssl_trusted_certificate=/nonexistent/ca.pem;',
        qr/health_check ssl_trusted_certificate="\/nonexistent\/ca.pem"/],
    ['health_check type=https ssl_verify=on ssl_verify=off;',
        qr/duplicate parameter "ssl_verify=off" in health_check/],
);

for my $case (@bad) {
    my ($hc, $re) = @$case;
    my ($rc, $out) = $c->nginx_t(conf($hc));
    isnt($rc, 0, "refused: $hc");
    like($out, qr/\[emerg\] .*$re.* in \S+nginx\.conf:2\b/,
         "emerg with value and line: $hc") or diag($out);
}

done_testing();
