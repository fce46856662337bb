#!/usr/bin/perl

# Weights with more than two decimals are refused with 400 invalid_weight,
# also those within a tiny distance of two decimals (10.000000001), in the
# API and in the state file; two decimals, and numbers written otherwise
# (1e1, 12.50), are accepted.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSConsistency;

my $t = TSTest->new;
$t->backend($_) for qw(blue1 green1);

my $file = $t->testdir . '/state.json';
$t->write_config(TSConsistency::app_conf(state => $file));
$t->start;

sub patch_raw {
    my ($json) = @_;
    return $t->http('PATCH', '/traffic/upstreams/app', port => 'api',
                    json => $json);
}

my $gen = $t->get('/traffic/upstreams/app', port => 'api')
    ->{json}{generation};

for my $body ('{"weights":{"blue":10.000000001,"green":89.999999999}}',
              '{"weights":{"blue":10.0000001,"green":89.9999999}}',
              '{"weights":{"blue":33.333,"green":66.667}}',
              '{"weights":{"blue":0.001,"green":99.999}}')
{
    my $r = patch_raw($body);
    is($r->{status}, 400, "$body: 400")
        or diag("got $r->{status}: $r->{body}");
    is($r->{json} && $r->{json}{error}{code}, 'invalid_weight',
       "$body: invalid_weight");
}

my $now = $t->get('/traffic/upstreams/app', port => 'api')->{json};
is($now->{generation}, $gen, 'nothing was changed');
is_deeply($now->{weights}, { blue => 100, green => 0 }, 'weights as before');

for my $case (['{"weights":{"blue":12.5,"green":87.5}}', 12.5],
              ['{"weights":{"blue":33.33,"green":66.67}}', 33.33],
              ['{"weights":{"blue":1e1,"green":9.0e1}}', 10],
              ['{"weights":{"blue":12.50,"green":87.50}}', 12.5])
{
    my ($body, $blue) = @$case;
    my $r = patch_raw($body);
    is($r->{status}, 200, "$body: 200");
    is($r->{json} && $r->{json}{weights}{blue}, $blue, "$body: blue $blue");
}

# the same rule when a state file is read at start

$t->stop;
$t->write_file($file, '{"format":"nginx-traffic-shift-state","version":1,'
    . '"written":1795000000,"upstreams":{"app":{"weights":'
    . '{"blue":10.000000001,"green":89.999999999},"generation":7,'
    . '"updated":1795000000}},"admin_down":[]}');
$t->start;
is($t->get('/traffic/upstreams/app', port => 'api')->{json}{source},
   'config', 'state file with more than two decimals: ignored');

done_testing();
