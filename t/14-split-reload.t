#!/usr/bin/perl

# Reload: weights that come from the configuration follow it, a change of
# the pool set resets with a notice, a zone that changes size is carried
# over, and no request fails while nginx reloads under a steady load.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use POSIX ();
use Time::HiRes qw(time);

my $template = <<'EOF';
http {
    ZONE
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%; }

    traffic_shift app {
        POOLS
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        add_header X-Pool $traffic_shift_pool always;
        location / { proxy_pass http://app; }
    }
}
EOF

sub conf {
    my ($pools, $zone) = @_;
    (my $c = $template) =~ s/POOLS/$pools/;
    $zone = $zone ? "traffic_shift_zone shift $zone;" : '';
    $c =~ s/ZONE/$zone/;
    return $c;
}

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 green1);

$t->write_config(conf('pool blue u_blue weight=100; pool green u_green;'));
$t->start;

my $c = $t->count_backends(n => 20);
is_deeply($c, { blue1 => 20 }, 'blue 100 from the configuration');

# a steady request loop in a child process while the parent reloads
sub load_during {
    my ($work) = @_;
    my $result = $t->testdir . '/load.result';
    my $stop = $t->testdir . '/load.stop';
    unlink $result, $stop;

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my %status;
        my $deadline = time + 60;
        while (!-e $stop && time < $deadline) {
            my $r = $t->get('/', quiet => 1, timeout => 5);
            $status{$r->{status}}++;
        }
        open my $fh, '>', $result or POSIX::_exit(1);
        print $fh join(' ', map { "$_=$status{$_}" } sort keys %status);
        close $fh;
        POSIX::_exit(0);
    }

    $work->();

    open my $fh, '>', $stop or die "$stop: $!";
    close $fh;
    waitpid $pid, 0;
    return $t->read_file('load.result') // '';
}

my $reloads = 0;
my $summary = load_during(sub {
    for my $i (1 .. 5) {
        my $w = $i % 2 ? 'pool blue u_blue weight=50; '
                         . 'pool green u_green weight=50;'
                       : 'pool blue u_blue weight=100; pool green u_green;';
        $t->write_config(conf($w));
        $reloads++ if $t->reload;
    }
});
is($reloads, 5, 'five reloads under load');
like($summary, qr/^200=\d+$/, "no request failed while reloading ($summary)");

# the last reload left 50/50 from the configuration
$c = $t->count_backends(n => 100);
ok(abs(($c->{blue1} // 0) - 50) <= 2 && abs(($c->{green1} // 0) - 50) <= 2,
    'configuration weights 50/50 apply after reload')
    or diag(explain $c);

# pools added or removed: that upstream resets to its configured weights
$t->write_config(conf('pool blue u_blue weight=20; '
    . 'pool green u_green weight=80; pool canary u_green;'));
ok($t->reload, 'reloaded with a third pool');
like($t->error_log,
    qr/\[notice\].*traffic_shift "app": pools changed, weights reset/,
    'pool set change is logged');
$c = $t->count_backends(n => 100);
ok(abs(($c->{blue1} // 0) - 20) <= 2, 'new configuration weights apply')
    or diag(explain $c);

# an explicit zone of another size: the state is carried over
$t->write_config(conf('pool blue u_blue weight=20; '
    . 'pool green u_green weight=80; pool canary u_green;', '2m'));
ok($t->reload, 'reloaded with a 2m zone');
$c = $t->count_backends(n => 100);
ok(abs(($c->{blue1} // 0) - 20) <= 2, 'weights kept across the new zone')
    or diag(explain $c);

$t->write_config(conf('pool blue u_blue weight=70; '
    . 'pool green u_green weight=30; pool canary u_green;', '4m'));
ok($t->reload, 'reloaded with a 4m zone and new weights');
$c = $t->count_backends(n => 100);
ok(abs(($c->{blue1} // 0) - 70) <= 2, 'configuration weights follow')
    or diag(explain $c);

done_testing();
