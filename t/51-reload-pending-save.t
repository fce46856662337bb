#!/usr/bin/perl

# A change accepted by a worker that a reload (same zone) is shutting down
# is answered with 200 and the new state once the state file holds it; the
# worker does not exit with the answer pending.

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

$t->write_config(TSConsistency::app_conf(zone => 'shift 1m',
                                          state => $file));
$t->start;

sub app { $t->get('/traffic/upstreams/app', port => 'api')->{json} }

my $gen = app()->{generation};

for my $i (1 .. 2) {
    my $what = "reload $i";
    my $weights = $i == 1 ? { blue => 25, green => 75 }
                          : { blue => 60, green => 40 };

    my $h = TSConsistency::hold($t, 'PATCH', '/traffic/upstreams/app',
        json => { weights => $weights });
    ok($h, "$what: a change waits for its body in the worker");

    my @old = TSConsistency::reload_new($t, undef,
        path => '/traffic/upstreams/app');
    ok(@old, "$what: reloaded with the same zone, the new worker serves");

    my $mark = $t->log_mark;
    my $r = $h ? TSConsistency::finish($h) : { status => 0, body => '' };
    is($r->{status}, 200, "$what: the change is answered with 200")
        or diag("got $r->{status}"
                . ($r->{error} ? " ($r->{error})" : '') . ": $r->{body}");
    is_deeply($r->{json} && $r->{json}{weights}, $weights,
        "$what: the answer has the new weights");
    is($r->{json} && $r->{json}{generation}, $gen + 1,
        "$what: and the new generation");
    ok($r->{json} && $r->{json}{persisted}, "$what: persisted");

    TSConsistency::wait_gone($t, @old);
    unlike($t->error_log(since => $mark),
        qr/open socket .* left in connection|aborting/,
        "$what: the old worker left no connection behind");

    my $now = app();
    is_deeply($now->{weights}, $weights, "$what: the change is live");
    $gen = $now->{generation};

    my $saved = TSConsistency::read_json($t, $file);
    is_deeply($saved && $saved->{upstreams}{app}{weights}, $weights,
        "$what: the state file holds the change");
    is($saved && $saved->{upstreams}{app}{generation}, $gen,
        "$what: with its generation");
}

done_testing();
