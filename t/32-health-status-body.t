#!/usr/bin/perl

# What decides health: status codes and ranges, the body regex, tcp
# connects, port= and uri=; a backend that never answers fails on timeout.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use IO::Socket::INET;
use TSTest;

my $t = TSTest->new;
my $b = TSTest::Backends->new(backends => [
    'ok',
    's404' => { health => 404 },
    's500' => { health => 500 },
    's503' => { health => 503 },
]);
$b->start;

# accepts connections (in the kernel's backlog) and never answers
my $hole = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                 Proto => 'tcp', Listen => 128)
    or die "listen: $!";
my $hole_port = $hole->sockport;

# nothing listens there
my $closed_port = $t->port('closed');

# name => [server, health_check parameters, expected reason or undef (up)]
my %cases = (
    default_ok   => ['ok', '', undef],
    default_404  => ['s404', '', 'status 404'],
    range_404    => ['s404', 'status=200-299 400-404', undef],
    list_503     => ['s503', 'status=200 503', undef],
    list_500     => ['s500', 'status=200,503', 'status 500'],
    range_5xx    => ['s500', 'status=500-599', undef],
    body_ok      => ['ok', 'body=^ok$', undef],
    body_bad     => ['ok', '"body=^(degraded|down)"', 'body mismatch'],
    status_body  => ['s503', 'status=503 body=ok', undef],
    status_first => ['s404', 'body=ok', 'status 404'],
    port         => ['ok', "port=PORT_s503 status=503", undef],
    uri          => ['ok', 'status=200', undef, '/other'],
    timeout      => ["hole", 'timeout=300ms', 'timeout while reading response'],
    slow         => ['ok', 'timeout=300ms', 'timeout while reading response',
                     '/slow'],
    tcp_hole     => ["hole", 'type=tcp', undef],
    tcp_closed   => ["closed", 'type=tcp', 'connect refused'],
    http_closed  => ["closed", '', 'connect refused'],
);

my $upstreams = '';
for my $name (sort keys %cases) {
    my ($server, $params, undef, $uri) = @{$cases{$name}};
    my $port = $server eq 'hole' ? $hole_port
             : $server eq 'closed' ? $closed_port
             : "%%PORT_$server%%";
    $params =~ s/PORT_(\w+)/%%PORT_$1%%/g;
    $uri //= '/healthz';
    my $q = $params =~ /type=tcp/ ? '' : "uri=$uri?u=$name";
    $upstreams .= "    upstream $name { server 127.0.0.1:$port; "
        . "health_check $q interval=300ms fails=1 passes=1 $params; }\n";
}

# a server "down" in the configuration is never probed and stays down,
# even when the upstream fails open
$upstreams .= <<'EOF';
    upstream conf_down {
        server 127.0.0.1:%%PORT_ok%% down;
        server 127.0.0.1:%%PORT_s404%%;
        health_check uri=/healthz?u=conf_down status=200-499 interval=300ms;
    }
    upstream conf_down_open {
        server 127.0.0.1:%%PORT_ok%% down;
        server 127.0.0.1:%%PORT_s503%%;
        health_check uri=/healthz?u=conf_down_open interval=300ms;
    }
EOF

$t->write_config(<<"EOF");
http {
$upstreams
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://default_ok; }
        location /conf_down { proxy_pass http://conf_down; }
        location /conf_down_open { proxy_pass http://conf_down_open; }
    }
}
EOF
$t->start;

sub address {
    my ($name) = @_;
    my $server = $cases{$name}[0];
    my $port = $server eq 'hole' ? $hole_port
             : $server eq 'closed' ? $closed_port
             : $t->port($server);
    return "127.0.0.1:$port";
}

sub probes_seen {
    my ($name) = @_;
    my ($server, $params, undef, $uri) = @{$cases{$name}};
    $server = 's503' if $params =~ /^port=/;
    $uri //= '/healthz';
    return $b->backend_hits($server, qr{^\Q$uri?u=$name\E$});
}

my @up = grep { !defined $cases{$_}[2] } sort keys %cases;
my @down = grep { defined $cases{$_}[2] } sort keys %cases;

# up: three answered probes each (tcp: no request, give them the time of
# the others); down: the mark

ok($t->wait_for(sub {
    my $log = $t->error_log;
    for my $name (@down) {
        my $a = address($name);
        return 0 unless $log =~ /server \Q$a\E in upstream "$name" is down/;
    }
    for my $name (grep { $cases{$_}[1] !~ /type=tcp/ } @up) {
        return 0 if probes_seen($name) < 3;
    }
    return 1;
}, timeout => 10, what => 'probes of every upstream'), 'every upstream probed');

my $log = $t->error_log;

for my $name (@down) {
    my $a = address($name);
    my $reason = $cases{$name}[2];
    like($log,
         qr/server \Q$a\E in upstream "$name" is down after 1 failed health check\(s\), last: \Q$reason\E/,
         "$name: down, \"$reason\"");
}

for my $name (@up) {
    unlike($log, qr/in upstream "$name" (is down|failed)/,
           "$name: up, no failed probe");
}

ok(probes_seen('port') >= 3, 'port=: the override port gets the probes');
is($b->backend_hits('ok', qr{^/healthz\?u=port$}), 0,
   'port=: nothing to the server\'s own port');
ok(probes_seen('uri') >= 3, 'uri=: probes ask for that uri');

# the timeout is a failure counted from the probe's start

like($log, qr/health check of server \Q${\ address('timeout')}\E in upstream "timeout" failed: timeout while reading response/,
     'timeout logged as the failure reason');

# a tcp probe only connects

ok($t->wait_for(sub { $t->error_log =~ /upstream "tcp_closed" failed.*\n(?s:.*)upstream "tcp_closed" failed/ },
                timeout => 5, what => 'two tcp probes'),
   'tcp probes repeat');

# down in the configuration

ok($t->wait_for(sub { $b->backend_hits('s404', qr{^/healthz\?u=conf_down$}) >= 2
                      && $t->error_log =~ /upstream "conf_down_open" is down/ },
                timeout => 5, what => 'conf_down probes'),
   'the other servers of those upstreams are probed');
is($b->backend_hits('ok', qr{^/healthz\?u=conf_down}), 0,
   'a server down in the configuration is not probed');
is_deeply($t->count_backends(n => 10, path => '/conf_down'), { s404 => 10 },
          'and gets no request');
is_deeply($t->count_backends(n => 10, path => '/conf_down_open'),
          { s503 => 10 },
          'not even when the upstream fails open');

close $hole;

done_testing();
