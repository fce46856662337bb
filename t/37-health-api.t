#!/usr/bin/perl

# Health through the admin API: GET /health and /health/UPSTREAM report
# each server's state, consecutive passes and fails, last probe and last
# error; the metrics traffic_shift_server_up and traffic_shift_probes_total
# follow the probes; an admin-down mark combines with health into "live".

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $t = TSTest->new;

my ($rc, $out) = $t->nginx_t(<<'EOF');
http {
    server {
        listen 127.0.0.1:%%PORT_main%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
plan skip_all => 'traffic_shift_api is not supported by this build'
    if $rc != 0 && $out =~ /not supported/;

my $b = TSTest::Backends->new(backends => [qw(b1 b2 p1)]);
$b->start;

$t->write_config(<<'EOF');
http {
    upstream app {
        server 127.0.0.1:%%PORT_b1%%;
        server 127.0.0.1:%%PORT_b2%%;
        health_check uri=/healthz interval=200ms fails=2 passes=1;
    }
    upstream plain { server 127.0.0.1:%%PORT_p1%%; }

    traffic_shift shifted {
        pool main app weight=100;
        pool other plain;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
$t->start;

my %addr = map { $_ => '127.0.0.1:' . $t->port($_) } qw(b1 b2 p1);

# the record of a server, wherever the document puts it
sub find_server {
    my ($doc, $address) = @_;
    my @todo = ($doc);
    while (@todo) {
        my $x = shift @todo;
        if (ref $x eq 'HASH') {
            return $x if ($x->{address} // '') eq $address
                         && exists $x->{state};
            push @todo, values %$x;
        } elsif (ref $x eq 'ARRAY') {
            push @todo, @$x;
        }
    }
    return undef;
}

sub server {
    my ($path, $name) = @_;
    my $r = $t->get($path);
    return undef unless $r->{status} == 200 && $r->{json};
    return find_server($r->{json}, $addr{$name});
}

sub metric {
    my ($name, %labels) = @_;
    my $text = $t->get('/traffic/metrics')->{body};
    for my $line (split /\n/, $text) {
        my ($n, $l, $v) = $line =~ /^(\w+)\{([^}]*)\} (\S+)$/ or next;
        next unless $n eq $name;
        my %have = $l =~ /(\w+)="([^"]*)"/g;
        next if grep { ($have{$_} // '') ne $labels{$_} } keys %labels;
        return $v;
    }
    return undef;
}

# before its first probe a checked server is "checking", then "up"

my $s = server('/traffic/health', 'b1');
ok($s, 'b1 listed in /health') or diag($t->get('/traffic/health')->{body});
ok($s && ($s->{state} eq 'up' || $s->{state} eq 'checking'),
   'b1 up or checking at start');
ok($s && ($s->{state} eq 'checking') == !defined $s->{last_probe},
   'checking exactly while never probed');

ok($t->wait_for(sub { my $x = server('/traffic/health', 'b1');
                      $x && $x->{state} eq 'up' && defined $x->{last_probe} },
                timeout => 5, what => 'b1 probed'), 'b1 up after a probe');

$s = server('/traffic/health', 'p1');
is($s && $s->{state}, 'up', 'server of an unchecked upstream: up');

# unhealthy: down, with the counts and the reason

$b->set_backend('b2', healthy => 0);
ok($t->wait_for(sub { my $x = server('/traffic/health', 'b2');
                      $x && $x->{state} eq 'down' },
                timeout => 5, what => 'b2 down'), 'b2 down in /health');

$s = server('/traffic/health/app', 'b2');
ok($s, 'b2 listed in /health/app');
is($s && $s->{last_error}, 'status 503', 'last error');
ok($s && $s->{fails} >= 2, 'consecutive fails counted');
is($s && $s->{passes}, 0, 'no consecutive pass');
ok($s && defined $s->{last_probe}, 'last probe time');

$s = server('/traffic/health/app', 'b1');
ok($s && $s->{passes} >= 1 && $s->{fails} == 0, 'b1: passes counted');

is($t->get('/traffic/health/nope')->{status}, 404, 'unknown upstream: 404');

is(metric('traffic_shift_server_up', upstream => 'app',
          server => $addr{b2}), 0, 'metric: b2 not up');
is(metric('traffic_shift_server_up', upstream => 'app',
          server => $addr{b1}), 1, 'metric: b1 up');
ok((metric('traffic_shift_probes_total', upstream => 'app',
           server => $addr{b2}, result => 'fail') // 0) >= 2,
   'metric: failed probes of b2');
ok((metric('traffic_shift_probes_total', upstream => 'app',
           server => $addr{b1}, result => 'ok') // 0) >= 1,
   'metric: passed probes of b1');

# admin-down combines with health: no live server left, fail open

my $id = server('/traffic/health/app', 'b1')->{id} // 0;
my $r = $t->patch("/traffic/health/app/servers/$id", { down => JSON::PP::true });
is($r->{status}, 200, 'b1 admin-down');
is(server('/traffic/health/app', 'b1')->{state}, 'admin_down',
   'b1 admin_down in /health');
is(metric('traffic_shift_server_up', upstream => 'app',
          server => $addr{b1}), 0, 'metric: b1 not up');

# b2 healthy again: the only live server

$b->set_backend('b2', healthy => 1);
ok($t->wait_for(sub { my $x = server('/traffic/health', 'b2');
                      $x && $x->{state} eq 'up' },
                timeout => 5, what => 'b2 up'), 'b2 back up');
is_deeply($t->count_backends(n => 10), { b2 => 10 },
          'b1 admin-down, b2 up: only b2');

$r = $t->patch("/traffic/health/app/servers/$id", { down => JSON::PP::false });
is($r->{status}, 200, 'b1 admin-down cleared');
my $c = $t->count_backends(n => 10);
ok(($c->{b1} // 0) > 0 && ($c->{b2} // 0) > 0, 'both serve again');

done_testing();
