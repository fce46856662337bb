#!/usr/bin/perl

# A reload that changes an upstream's pool set resets its weights to the
# configuration and rewrites the state file to match; a restart then keeps
# the configured weights, and generations never go backwards across
# reloads, restarts, and the removal and return of an upstream.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSConsistency;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 green1);

my $file = $t->testdir . '/state.json';

my %pools = (
    two => 'pool blue u_blue weight=100; pool green u_green;',
    three => 'pool blue u_blue weight=100; pool green u_green; '
        . 'pool canary u_blue;',
);
my %configured = (
    two => { blue => 100, green => 0 },
    three => { blue => 100, green => 0, canary => 0 },
);

sub conf {
    my ($pools, %o) = @_;
    return TSConsistency::app_conf(state => $file,
        pools => $pools ? $pools{$pools} : undef,
        app => $pools ? 1 : 0, %o);
}

sub app { $t->get('/traffic/upstreams/app', port => 'api')->{json} }

# the highest generation seen so far: none may be lower afterwards
my $max = 0;

sub check_generation {
    my ($what, $g) = @_;
    ok(defined $g && $g >= $max,
       "$what: generation " . ($g // 'none') . " not below $max");
    $max = $g if defined $g && $g > $max;
}

# the file agrees with the zone: the upstream is either not saved, or
# saved with the weights and generation the zone has
sub file_agrees {
    my ($what, $now) = @_;
    my $saved;
    my $ok = $t->wait_for(sub {
        $saved = TSConsistency::read_json($t, $file) or return 0;
        my $app = $saved->{upstreams}{app} or return 1;
        return 0 unless $app->{generation} == $now->{generation};
        my $w = $app->{weights};
        return !grep { ($w->{$_} // -1) != $now->{weights}{$_} }
            keys %{$now->{weights}};
    }, timeout => 3, what => 'the state file agreeing with the zone');
    ok($ok, "$what: the state file agrees with the zone")
        or diag(explain { file => $saved && $saved->{upstreams}{app},
                          zone => { weights => $now->{weights},
                                    generation => $now->{generation} } });
}

sub restart {
    my ($what, $pools) = @_;
    $t->stop;
    $t->start;
    my $s = app();
    is_deeply($s->{weights}, $configured{$pools},
        "$what: restart: the configured weights") or diag(explain $s);
    check_generation("$what: restart", $s->{generation});
}

$t->write_config(conf('two'));
$t->start;
check_generation('start', app()->{generation});

# each step: runtime weights, then reloads that change the pool set; the
# last "two"-pool weights stay in the file unless the reloads rewrite it

my @steps = (
    [ 'pool added', { blue => 30, green => 70 }, 'three' ],
    [ 'pool removed', { blue => 40, green => 50, canary => 10 }, 'two' ],
    [ 'pool set back', { blue => 20, green => 80 }, 'three', 'two' ],
);

for my $step (@steps) {
    my ($what, $weights, @reloads) = @$step;

    my $r = $t->patch('/traffic/upstreams/app', { weights => $weights },
                      port => 'api');
    is($r->{status}, 200, "$what: runtime weights set");
    check_generation("$what: change", $r->{json}{generation});

    ok($t->reload(conf($_)), "$what: reload with pools $_") for @reloads;

    my $s = app();
    is_deeply($s->{weights}, $configured{$reloads[-1]},
        "$what: configured weights");
    is($s->{source}, 'config', "$what: source config");
    check_generation($what, $s->{generation});
    file_agrees($what, $s);
    restart($what, $reloads[-1]);
}

# the upstream removed and added back

my $r = $t->patch('/traffic/upstreams/app',
    { weights => { blue => 55, green => 45 } }, port => 'api');
check_generation('change', $r->{json}{generation});
ok($t->reload(conf(undef)), 'reload: app removed');
ok($t->reload(conf('two')), 'reload: app added back');
my $s = app();
check_generation('app added back', $s->{generation});
file_agrees('app added back', $s);
$t->stop;
$t->start;
check_generation('app added back: restart', app()->{generation});

done_testing();
