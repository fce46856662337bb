#!/usr/bin/perl

# A rollout outlives its driver and reloads: kill -9 of the worker that
# drives it, and a reload, in the middle of a rollout, and it goes on to
# the end; a reload that changes the upstream's pools aborts it, logged.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSRollout;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 canary1 green1);

my $conf = <<'EOF';
http {
    upstream b1 { server 127.0.0.1:%%PORT_blue1%%; }
    upstream c1 { server 127.0.0.1:%%PORT_canary1%%; }
    upstream g1 { server 127.0.0.1:%%PORT_green1%%; }

    traffic_shift app { pool blue b1 weight=100; pool canary c1; POOLS }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF
(my $c = $conf) =~ s/POOLS//;
$t->write_config($c);
$t->start;

my %api = (api => '/traffic', port => 'api');
my %doc = (
    pool => 'canary', baseline => ['blue'], steps => [10, 20, 40, 60, 100],
    interval => '1s', min_requests => 5,
    analysis => { max_error_ratio => 0.05 },
    fast_abort => { error_ratio => 0.5, window => 10 },
);

sub drive {
    return TSRollout::drive($t, 'app', %api, @_);
}

is($t->put('/traffic/upstreams/app/rollout', \%doc, port => 'api')
   ->{status}, 201, 'started');
my $gen = $t->get('/traffic/upstreams/app', port => 'api')->{json}
    {generation} - 1;

# kill -9 the driver at step 2: another worker takes over

ok(drive(until => sub { $_[0]{step} >= 2 }, what => 'step 2'), 'step 2');
my ($driver) = $t->error_log
    =~ /\[info\] (\d+)#\d+: traffic_shift: this worker now drives/;
ok($driver, "the driver: worker $driver");
kill 'KILL', $driver;
ok($t->wait_for(sub { $t->worker_count == 2 && !kill(0, $driver) },
                what => 'worker replaced'), 'the killed worker replaced');

ok(drive(until => sub { $_[0]{step} >= 4 }, what => 'step 4'),
   'step 4 after the kill');
my @drivers = $t->error_log
    =~ /\[info\] (\d+)#\d+: traffic_shift: this worker now drives/g;
ok((grep { $_ != $driver } @drivers), 'another worker drives');

# a reload at step 4 keeps it going

ok($t->reload, 'reload');
my $doc = drive(until => sub { $_[0]{state} ne 'progressing' },
                what => 'the end');
is($doc->{state}, 'succeeded', 'succeeded after a kill and a reload');
is_deeply([map { $_->{verdict} } @{$doc->{history}}], [('pass') x 5],
          'five steps passed, none twice');
is($t->get('/traffic/upstreams/app', port => 'api')->{json}{generation},
   $gen + 5, 'one change per step');

# a reload that changes the pools aborts a running rollout

$t->patch('/traffic/upstreams/app', { active => 'blue' }, port => 'api');
is($t->put('/traffic/upstreams/app/rollout', \%doc, port => 'api')
   ->{status}, 201, 'started again');
($c = $conf) =~ s/POOLS/pool green g1;/;
ok($t->reload($c), 'reload with another pool');
$doc = TSRollout::get($t, 'app', %api);
is($doc->{state}, 'aborted', 'aborted by the reload');
like($doc->{reason}, qr/pools of the upstream changed/, 'the reason');
like($t->error_log, qr/\[warn\].*"app": rollout aborted, the pools/,
     'logged');

$t->allow_log(qr/worker process \d+ exited on signal 9|shared memory zone/);

done_testing();
