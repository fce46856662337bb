#!/usr/bin/perl

# scripts/demo-fleet (make demo-fleet) runs to the end without an error,
# shows every step with what it claims (the split on the other node, one
# writer of two winning, 503 sync_unavailable while etcd is down), and
# leaves nothing running or behind.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSEtcd;
use TSCli qw(run_capture $ROOT);

TSEtcd::require_etcd();

my $t = TSTest->new(name => 'probe');
my $tmp = $t->testdir;
my $r = run_capture({ dir => $tmp, env => {
        TMPDIR => $tmp, DEMO_KEEP => undef,
        TS_MODULE => $t->module_path } },
    'timeout', '-k', '5', '120', "$ROOT/scripts/demo-fleet");

is($r->{rc}, 0, 'the fleet demo exits 0')
    or diag("stdout:\n$r->{out}\nstderr:\n$r->{err}");
is($r->{err}, '', 'nothing on stderr');

my $out = $r->{out};
for my $s ('Starting etcd', 'Starting two nginx nodes',
           'The fleet, as any node sees it', 'A 10% canary of green',
           'Two writers with the same ETag', 'A ramp to green',
           'etcd stops',
           'etcd is back', 'Stopping', 'Done')
{
    like($out, qr/^\d+\. .*\Q$s\E/m, "the demo shows: $s");
}
like($out, qr/"nodes":\[\{"node":"edge-1".*\{"node":"edge-2"/,
     'GET /fleet lists both nodes');
like($out, qr/^\s+90 edge-2-blue\n\s+10 edge-2-green$/m,
     'edge-2 routes 90/10 after the change made on edge-1');
like($out, qr/edge-1: HTTP 200, edge-2: HTTP 412/, 'one writer wins');
like($out, qr/"node":"edge-1"[^\n]*"rollout":\{"id":\d+,"state":"progressing"/,
     'GET /fleet on edge-2 names edge-1 driving the ramp');
like($out, qr/^\s+20 edge-2-green$/m,
     'edge-2 routes everything to green at the end of the ramp');
like($out, qr/"code":"sync_unavailable"/, 'a write with etcd down: 503');
like($out, qr/^   error logs clean$/m, 'the error logs are clean');

my @pids = $out =~ /started \((?:master )?pid (\d+)\)/g;
is(scalar @pids, 4, 'the demo names the pids of its two nginx masters '
                   . 'and of etcd, started twice')
    or diag("pids: @pids");
ok(!grep({ kill 0, $_ } @pids), 'none of them runs any more')
    or diag('still running: ' . join ' ', grep { kill 0, $_ } @pids);

opendir(my $dh, $tmp) or die "$tmp: $!";
my @left = grep { /^ts-demo-fleet-/ } readdir $dh;
closedir $dh;
is_deeply(\@left, [], 'the temporary directory is removed');

done_testing();
