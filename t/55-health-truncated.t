#!/usr/bin/perl

# A health probe fails on a response cut off inside its headers (a status
# line, then the connection closed without the blank line), as nginx's own
# proxy fails it with 502: the server is marked down with a last error
# that says the response was incomplete.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSConsistency;

my $t = TSTest->new;
$t->backend('good1');

my %answer = (
    cut => "HTTP/1.1 200 OK\r\n",
    cut_header => "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
);
TSConsistency::raw_server($t->port($_), $answer{$_}) for sort keys %answer;

$t->write_config(<<'EOF');
http {
    upstream u_cut {
        server 127.0.0.1:%%PORT_cut%%;
        server 127.0.0.1:%%PORT_good1%%;
        health_check uri=/healthz interval=200ms fails=1 passes=1;
    }
    upstream u_cut_header {
        server 127.0.0.1:%%PORT_cut_header%%;
        server 127.0.0.1:%%PORT_good1%%;
        health_check uri=/healthz interval=200ms fails=1 passes=1;
    }
    upstream direct { server 127.0.0.1:%%PORT_cut%%; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://direct; }
        location /traffic/ { traffic_shift_api; }
    }
}
EOF
$t->start;

is($t->get('/')->{status}, 502, "nginx's proxy answers 502 for it");

for my $name (sort keys %answer) {
    my $addr = '127.0.0.1:' . $t->port($name);
    my $good = '127.0.0.1:' . $t->port('good1');
    my $server = sub {
        my ($address) = @_;
        my $r = $t->get("/traffic/health/u_$name");
        return unless $r->{json};
        my ($s) = grep { $_->{address} eq $address }
            @{$r->{json}{servers} // []};
        return $s;
    };

    my $probes = sub {
        my $p = ($server->($addr) // {})->{probes} // {};
        my $n = 0;
        $n += $p->{$_} // 0 for qw(ok fail timeout);
        return $n;
    };
    ok($t->wait_for(sub { $probes->() >= 2 },
                    timeout => 5, what => "probes of u_$name"),
       "u_$name: probed twice");

    my $s = $server->($addr);
    is($s && $s->{state}, 'down', "u_$name: the cut-off server is down")
        or diag(explain $s);
    like($s && $s->{last_error} // '', qr/truncat|incomplete|premature/i,
         "u_$name: the last error says the response was incomplete");
    is($s && $s->{probes}{ok}, 0, "u_$name: no probe passed");
    is($server->($good)->{state}, 'up', "u_$name: the good server is up");
}

done_testing();
