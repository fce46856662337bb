#!/usr/bin/perl

# Ramps: PATCH /upstreams/NAME {"active": POOL, "ramp": DURATION} runs a
# rollout of the pool against the pools that have weight, in linear steps
# over the ramp, with a fast abort only: a ramp over 3s reaches 100% in
# three steps; a ramp to a failing pool is rolled back by the fast abort;
# bad bodies are refused and change nothing; a running rollout is 409.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSRollout;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 green1 canary1);

$t->write_config(<<'EOF');
http {
    upstream b1 { server 127.0.0.1:%%PORT_blue1%%; }
    upstream g1 { server 127.0.0.1:%%PORT_green1%%; }
    upstream c1 { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app {
        pool blue b1 weight=75; pool green g1 weight=25; pool canary c1;
    }

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
$t->start;

my %api = (api => '/traffic', port => 'api');

sub drive { return TSRollout::drive($t, 'app', %api, @_) }
sub patch {
    return $t->patch('/traffic/upstreams/app', $_[0], port => 'api',
                     quiet => 1);
}
sub upstream { return $t->get('/traffic/upstreams/app', port => 'api')->{json} }

# 1. a ramp over 3s: three steps of a second, to 100%

my $r = patch({ active => 'canary', ramp => '3s' });
is($r->{status}, 200, 'ramp: 200');
is($r->{json}{weights}{canary}, 33.33, 'the first step at once');
is($r->{json}{weights}{blue}, 50, 'the baseline shares the rest: blue');
is($r->{json}{weights}{green}, 16.67, 'and green, in their proportions');
my $ro = $r->{json}{rollout};
ok($ro, 'the answer has the rollout');
is($ro->{ramp}, JSON::PP::true, 'ramp: true');
is_deeply($ro->{steps}, [33.33, 66.66, 100], 'linear steps');
is($ro->{interval}, '1s', 'one a second');
is_deeply($ro->{baseline}, ['blue', 'green'], 'the pools with weight');
is_deeply($ro->{fast_abort}, { error_ratio => 0.2, window => 50,
                               errors => 0 }, 'the default fast abort');
is_deeply($ro->{analysis}, {}, 'no analysis');
is($r->{headers}{etag}, qq{"$r->{json}{generation}"}, 'the ETag');

is(patch({ active => 'green', ramp => '10s' })->{status}, 409,
   'another ramp while one runs: 409');

my $t0 = time;
my $doc = drive(until => sub { $_[0]{state} ne 'progressing' },
                what => 'the end of the ramp');
is($doc->{state}, 'succeeded', 'the ramp succeeded');
ok(time - $t0 >= 1, 'over the steps\' intervals');
is_deeply([map { $_->{weight} } @{$doc->{history}}], [33.33, 66.66, 100],
          'each step once');
is_deeply(upstream()->{weights}, { blue => 0, green => 0, canary => 100 },
          'all the traffic on the pool');

is(patch({ active => 'canary', ramp => '5s' })->{status}, 409,
   'a ramp to the pool that has it all: 409');

# 2. a ramp to a failing pool: the fast abort rolls it back

$t->set_backend('blue1', failing => 1);
$r = patch({ active => 'blue', ramp => '60s',
             fast_abort => { error_ratio => 0.2, window => 10 } });
is($r->{status}, 200, 'a ramp to a failing pool');
is($r->{json}{rollout}{fast_abort}{window}, 10, 'the fast abort given');
is(scalar @{$r->{json}{rollout}{steps}}, 20, 'at most 20 steps');
is($r->{json}{rollout}{interval}, '3s', 'of 3s each');
$doc = drive(until => sub { $_[0]{state} ne 'progressing' }, poll => 1,
             what => 'the fast abort');
is($doc->{state}, 'rolled_back', 'rolled back');
like($doc->{reason}, qr/^fast abort: \d+ errors in the last 10 responses/,
     'by the fast abort');
is_deeply(upstream()->{weights}, { blue => 0, green => 0, canary => 100 },
          'the weights from before');
$t->set_backend('blue1', failing => 0);

# 3. bad bodies: 400, nothing changes

my $gen = upstream()->{generation};
for my $bad (
    [ 'ramp without active', { ramp => '10s' }, 'missing_field' ],
    [ 'ramp with weights', { ramp => '10s', active => 'blue',
                             weights => { blue => 100 } },
      'conflicting_fields' ],
    [ 'a zero ramp', { active => 'blue', ramp => '0s' }, 'invalid_duration' ],
    [ 'a ramp over 24h', { active => 'blue', ramp => '25h' },
      'invalid_duration' ],
    [ 'a ramp that is not a time', { active => 'blue', ramp => 'soon' },
      'invalid_duration' ],
    [ 'a ramp that is a number', { active => 'blue', ramp => 60 },
      'invalid_duration' ],
    [ 'a ramp to an unknown pool', { active => 'red', ramp => '10s' },
      'unknown_pool' ],
    [ 'a ramp with force', { active => 'blue', ramp => '10s', force => 1 },
      'unknown_field' ],
    [ 'a ramp with a bad fast abort', { active => 'blue', ramp => '10s',
                                        fast_abort => { window => 10 } },
      'missing_field' ],
)
{
    my ($what, $body, $code) = @$bad;
    $r = patch($body);
    is($r->{status}, 400, "$what: 400");
    is($r->{json}{error}{code} // $r->{json}{code}, $code, "$what: $code");
}
is(upstream()->{generation}, $gen, 'nothing changed');

$t->stop;
unlike($t->error_log, qr/\[(alert|emerg|crit)\]|AddressSanitizer/,
       'no alert, crit or sanitizer report');

done_testing();
