#!/usr/bin/perl

# A change handled by a worker of the old configuration after a reload that
# replaced the zone (new size, new name) is refused with 503 "reloading" and
# never saved: the new workers do not show it, the state file does not hold
# it, and a restart does not bring it.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSConsistency;

my $t = TSTest->new(workers => 1);
$t->backend($_) for qw(blue1 green1);

my $file = $t->testdir . '/state.json';

sub conf {
    my ($zone, $state) = @_;
    return TSConsistency::app_conf(zone => $zone,
                                   state => $state ? $file : undef);
}

sub app { $t->get('/traffic/upstreams/app', port => 'api')->{json} }

# each step starts nginx with zone "shift 1m", makes a first change, holds
# a second one in the worker and reloads with another zone

my @steps = (
    [ 'no state file, zone resized', 'shift 2m', 0 ],
    [ 'zone resized', 'shift 2m', 1 ],
    [ 'zone renamed', 'other 1m', 1 ],
);

for my $step (@steps) {
    my ($what, $zone, $state) = @$step;

    unlink $file;
    $t->write_config(conf('shift 1m', $state));
    $t->start;

    my $r = $t->patch('/traffic/upstreams/app',
        { weights => { blue => 80, green => 20 } }, port => 'api');
    is($r->{status}, 200, "$what: a first change: 200");
    my $before = app();

    my $h = TSConsistency::hold($t, 'PATCH', '/traffic/upstreams/app',
        json => { weights => { blue => 10, green => 90 } });
    ok($h, "$what: a change waits for its body in the old worker");

    my @old = TSConsistency::reload_new($t, conf($zone, $state),
        path => '/traffic/upstreams/app');
    ok(@old, "$what: reloaded, the new worker serves");

    $r = $h ? TSConsistency::finish($h) : { status => 0 };
    is($r->{status}, 503, "$what: the old worker refuses the change with 503")
        or diag("got $r->{status}: $r->{body}");
    is($r->{json} && $r->{json}{error}{code}, 'reloading',
        "$what: error code reloading");
    is($r->{json} && $r->{json}{error}{status}, 503,
        "$what: error object status 503");

    TSConsistency::wait_gone($t, @old);

    my $after = app();
    is_deeply($after->{weights}, $before->{weights},
        "$what: the new worker shows the weights unchanged");
    is($after->{generation}, $before->{generation},
        "$what: generation unchanged");

    if ($state) {
        my $saved = TSConsistency::read_json($t, $file);
        is_deeply($saved && $saved->{upstreams}{app}{weights},
            $before->{weights},
            "$what: the state file does not hold the refused change")
            or diag(explain $saved);

        $t->stop;
        $t->start;
        my $restarted = app();
        is_deeply($restarted->{weights}, $before->{weights},
            "$what: a restart does not bring the refused change")
            or diag(explain $restarted);
        is($restarted->{generation}, $before->{generation},
            "$what: restart: generation of the last accepted change");
    }

    $t->stop;
}

done_testing();
