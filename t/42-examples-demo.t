#!/usr/bin/perl

# scripts/demo (make demo) in its short mode runs to the end without an
# error, shows every step, and leaves nothing running or behind.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSCli qw(run_capture missing_features $ROOT);

my $t = TSTest->new(name => 'probe');
my $missing = missing_features($t);

my $tmp = $t->testdir;
my $r = run_capture({ dir => $tmp, env => {
        DEMO_SHORT => 1, TMPDIR => $tmp, DEMO_KEEP => undef,
        TS_MODULE => $t->module_path, TRAFFIC_SHIFT_API => undef } },
    'timeout', '-k', '5', '180', "$ROOT/scripts/demo");

is($r->{rc}, 0, 'the demo exits 0')
    or diag("stdout:\n$r->{out}\nstderr:\n$r->{err}");
is($r->{err}, '', 'nothing on stderr');

my @steps = $missing->{traffic_shift_api}
    ? ('Requests through the front end')
    : ('The state of the traffic_shift upstream',
       'Canary: 10% of the traffic',
       'Sticky clients',
       ($missing->{health_check} ? () :
           ('A canary server fails', 'canary2 is repaired')),
       'Blue/green: green is deployed',
       'roll back in one call',
       'What nginx logged');

my $out = $r->{out};
for my $s ('Writing a configuration', 'Starting nginx', @steps,
           'Stopping nginx', 'Done')
{
    like($out, qr/^\d+\. .*\Q$s\E/m, "the demo shows: $s");
}
like($out, qr/^error log clean$/m, 'the error log of the demo is clean');

unless ($missing->{traffic_shift_api}) {
    like($out, qr/^\s+canary\s+\d+\s+\(\s*\d+\.\d%\)/m,
        'the observed split is printed');
    like($out, qr/moved out of it: 0$/m, 'no sticky client left the canary');
    like($out, qr/^\s+green\s+\d+\s+\(100\.0%\)/m, 'the flip: all green');
    like($out, qr/^\s+blue\s+\d+\s+\(100\.0%\)/m, 'the rollback: all blue');
    unlike($out, qr/^\s+errors\s/m, 'no request failed');
}
unless ($missing->{health_check} || $missing->{traffic_shift_api}) {
    like($out, qr/^\s+\d+\s+127\.0\.0\.1:\d+\s+down\s/m,
        'the failing canary server is shown down');
}

my ($pid) = $out =~ /nginx started \(master pid (\d+)\)/;
ok($pid && !kill(0, $pid), 'the nginx of the demo is not running');
ok(!glob("$tmp/traffic-shift-demo.*"), 'the demo removed its directory');

done_testing();
