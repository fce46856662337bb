#!/usr/bin/perl

# sticky: a key keeps its pool, keys split by weight, a growing canary
# declared last only gains keys; route: forces a pool by name.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;

my $template = <<'EOF';
http {
    upstream u_blue   { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green  { server 127.0.0.1:%%PORT_green1%%; }
    upstream u_canary { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app {
        pool blue   u_blue   weight=BLUE;
        pool green  u_green;
        pool canary u_canary weight=CANARY;
        sticky $http_x_uid;
        route  $http_x_pool;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        add_header X-Pool $traffic_shift_pool always;
        location / { proxy_pass http://app; }
    }
}
EOF

sub conf {
    my ($blue, $canary) = @_;
    (my $c = $template) =~ s/BLUE/$blue/;
    $c =~ s/CANARY/$canary/;
    return $c;
}

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 green1 canary1);
$t->write_config(conf(90, 10));
$t->start;

my $N = 2000;

sub assign {
    my (%pool, $bad);
    for my $i (1 .. $N) {
        my $r = $t->get('/', headers => { 'X-Uid' => "user-$i" },
            quiet => 1);
        my $p = $r->{headers}{'x-pool'} // '';
        $bad++ unless $r->{status} == 200
            && ($r->{headers}{'x-backend'} // '') eq "${p}1";
        $pool{"user-$i"} = $p;
    }
    return (\%pool, $bad // 0);
}

sub share {
    my ($assign, $name) = @_;
    return 100 * (grep { $_ eq $name } values %$assign) / $N;
}

my ($before, $bad) = assign();
is($bad, 0, 'every sticky request answered by the pool named');

my $canary = share($before, 'canary');
ok(abs($canary - 10) <= 3, "90/10: $N keys, canary share $canary% is 10 +-3");
is(share($before, 'green'), 0, 'a pool with weight 0 gets no key');

# the same key always gets the same pool, whichever worker answers
my $moved = 0;
for my $i (1 .. 200) {
    for (1 .. 3) {
        my $r = $t->get('/', headers => { 'X-Uid' => "user-$i" },
            quiet => 1);
        $moved++ if ($r->{headers}{'x-pool'} // '') ne $before->{"user-$i"};
    }
}
is($moved, 0, 'a key keeps its pool while the weights stay the same');

# an empty key falls back to weighted round robin
my $c = $t->count_backends(n => 20, headers => { 'X-Uid' => '' });
is(($c->{blue1} // 0) + ($c->{canary1} // 0), 20, 'empty key: by weights');

# the canary grows from 10 to 20: keys only move into it
$t->write_config(conf(80, 20));
ok($t->reload, 'reloaded with canary 20');

my ($after) = assign();
my ($into, $out, $other) = (0, 0, 0);
for my $k (keys %$before) {
    next if $before->{$k} eq $after->{$k};
    if ($after->{$k} eq 'canary') {
        $into++;
    } elsif ($before->{$k} eq 'canary') {
        $out++;
    } else {
        $other++;
    }
}
is($out, 0, 'no key left the canary when it grew');
is($other, 0, 'no key moved between the other pools');
ok($into > 0, "keys moved into the canary ($into)");
$canary = share($after, 'canary');
ok(abs($canary - 20) <= 3, "80/20: canary share $canary% is 20 +-3");

# route forces a pool by name, even one with weight 0
my $r = $t->get('/', headers => { 'X-Pool' => 'green', 'X-Uid' => 'u-1' });
is($r->{headers}{'x-backend'}, 'green1', 'route reaches a pool of weight 0');
is($r->{headers}{'x-pool'}, 'green', '$traffic_shift_pool names it');

$c = $t->count_backends(n => 20, headers => { 'X-Pool' => 'canary' });
is($c->{canary1}, 20, 'route to canary: every request');

# an unknown name, or a name in another case, falls back to the weights
$c = $t->count_backends(n => 100, headers => { 'X-Pool' => 'purple' });
ok(($c->{blue1} // 0) + ($c->{canary1} // 0) == 100
    && abs(($c->{canary1} // 0) - 20) <= 2,
    'unknown route: by weights, within one per worker')
    or diag(explain $c);
$c = $t->count_backends(n => 10, headers => { 'X-Pool' => 'GREEN' });
ok(!$c->{green1}, 'route names are case-sensitive');

done_testing();
