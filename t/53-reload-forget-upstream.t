#!/usr/bin/perl

# An upstream that leaves the configuration is forgotten: when a later
# reload (after one or three reloads without it) adds it back, it starts
# from its configured weights with a higher generation, with a notice, its
# servers' admin-down marks cleared (also for an upstream{} block removed
# and re-added on its own), and the state file and a restart agree.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSConsistency;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 green1 keep1 solo1);

my $file = $t->testdir . '/state.json';

my $keep = 'upstream u_keep { server 127.0.0.1:%%PORT_keep1%%; } '
    . 'traffic_shift keep { pool only u_keep weight=100; }';
my $solo = 'upstream u_solo { server 127.0.0.1:%%PORT_solo1%%; '
    . 'health_check type=tcp interval=1s; }';

my $full = TSConsistency::app_conf(state => $file, extra => "$keep $solo");
my $without = TSConsistency::app_conf(state => $file, app => 0,
                                      extra => $keep);

sub api { $t->http($_[0], "/traffic$_[1]", port => 'api',
                   $_[2] ? (json => $_[2]) : ()) }
sub app { api('GET', '/upstreams/app')->{json} }
sub server { api('GET', "/health/$_[0]/servers/0")->{json} }

my $green = 'u_green/127.0.0.1:' . $t->port('green1');
my $solo1 = 'u_solo/127.0.0.1:' . $t->port('solo1');

# what a forgotten and re-added upstream looks like, now and after a
# restart; $gen: a generation it must be above (or at, after a restart)
sub check_forgotten {
    my ($what, $gen, $strict) = @_;

    my $s = app();
    is($s->{source}, 'config', "$what: app starts from the configuration");
    is_deeply($s->{weights}, { blue => 100, green => 0 },
        "$what: configured weights");
    ok($strict ? $s->{generation} > $gen : $s->{generation} >= $gen,
       "$what: generation $s->{generation} "
       . ($strict ? 'above' : 'not below') . " $gen");

    for my $u (qw(u_green u_solo)) {
        my $x = server($u);
        ok($x && !$x->{admin_down} && $x->{state} ne 'admin_down',
           "$what: the server of $u is no longer admin-down")
            or diag(explain $x);
    }

    my $saved;
    my $ok = $t->wait_for(sub {
        $saved = TSConsistency::read_json($t, $file) or return 0;
        return 0 if grep { $_ eq $green || $_ eq $solo1 }
            @{$saved->{admin_down} // []};
        my $a = $saved->{upstreams}{app} or return 1;
        return $a->{generation} == $s->{generation}
            && $a->{weights}{blue} == 100 && $a->{weights}{green} == 0;
    }, timeout => 3, what => 'the state file agreeing');
    ok($ok, "$what: the state file agrees")
        or diag(explain $saved);

    return $s->{generation};
}

for my $between (1, 3) {
    my $what = "$between reload" . ($between > 1 ? 's' : '') . ' without';

    unlink $file;
    $t->write_config($full);
    $t->start;

    my $r = api('PATCH', '/upstreams/app',
                { weights => { blue => 30, green => 70 } });
    is($r->{status}, 200, "$what: runtime weights 30/70");
    my $gen = $r->{json}{generation};
    for my $u (qw(u_green u_solo)) {
        is(api('PATCH', "/health/$u/servers/0", { down => JSON::PP::true })
               ->{status}, 200, "$what: the server of $u admin-down");
    }

    ok($t->reload($without), "$what: reload $_ without app and u_solo")
        for 1 .. $between;

    my $mark = $t->log_mark;
    ok($t->reload($full), "$what: reload adding them back");
    my $notice = qr/traffic_shift\ "app".*
                    (forgotten|starts\ from\ the\ configuration)/ix;
    ok($t->error_log(since => $mark) =~ $notice,
       "$what: a notice says app starts from the configuration");

    $gen = check_forgotten($what, $gen, 1);

    $t->stop;
    $t->start;
    check_forgotten("$what, restart", $gen, 0);
    $t->stop;
}

done_testing();
