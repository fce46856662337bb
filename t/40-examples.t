#!/usr/bin/perl

# conf-examples/: every file passes "nginx -t" with its paths pointed at
# the test directory, and the examples do what their comments say when
# nginx runs them: the blue/green flip and rollback under the CLI, the
# canary with sticky clients and the QA route, the hardened admin API
# (read-only location, address and password for changes), the state file
# across a restart.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSCli qw(example_template unsupported missing_features run_capture
             $ROOT);
use TSCli ();

# the CLI against the admin API of the examples (127.0.0.1:8081/traffic/)
sub cli {
    my ($t, @args) = @_;
    unshift @args, 'http://127.0.0.1:' . $t->port('p8081') . '/traffic/'
        unless @args && $args[0] =~ m{^http};
    return TSCli::cli($t, @args);
}

my @EXAMPLES = qw(admin-api-hardened.conf blue-green.conf
                  canary-sticky.conf health-checks.conf persistence.conf);

opendir(my $dh, "$ROOT/conf-examples") or die "conf-examples: $!";
my @found = sort grep { /\.conf$/ } readdir $dh;
closedir $dh;
is_deeply(\@found, [sort @EXAMPLES], 'conf-examples holds the five examples')
    or diag("found: @found");

# the password file of admin-api-hardened.conf, made as its comment says
sub htpasswd {
    my ($t, $user, $pass) = @_;
    my $r = run_capture({ dir => $t->testdir }, 'openssl', 'passwd',
        '-apr1', $pass);
    die "openssl passwd: $r->{err}" if $r->{rc};
    chomp(my $hash = $r->{out});
    $t->write_file('traffic-shift.htpasswd', "$user:$hash\n");
}

sub prepare {
    my ($t) = @_;
    my $d = $t->testdir;
    # the state directory belongs to the workers' user, as the example
    # says (the test directory does, when the tests run as root)
    mkdir "$d/traffic-shift" unless -d "$d/traffic-shift";
    my ($uid, $gid) = (stat $d)[4, 5];
    chown($uid, $gid, "$d/traffic-shift");
    htpasswd($t, 'deploy', 'secret-deploy-pw')
        unless -f "$d/traffic-shift.htpasswd";
}

my %missing;        # directive not in this build yet => 1

# Drop health_check directives (possibly on several lines): to run an
# example in a build that has the admin API but no health checks yet.
sub without_health {
    my ($text) = @_;
    $text =~ s{^(\s*)health_check\b[^;]*;}{$1# (health_check)}mg;
    return $text;
}


###########################################################################
# nginx -t

{
    my $t = TSTest->new(name => 'syntax');
    prepare($t);
    %missing = %{missing_features($t)};

    for my $file (@EXAMPLES) {
        my $template = example_template($file);
        my ($rc, $out) = $t->nginx_t($template);
        if (my $d = unsupported($out)) {
            $missing{$d} = 1;
            SKIP: { skip("$file: $d is not in this build yet", 1) }
            next;
        }
        ok($rc == 0 && $out =~ /test is successful/
            && $out !~ /\[(warn|emerg|alert|crit)\]/,
            "nginx -t accepts $file")
            or diag($out);
    }
}

sub need {
    my (@directives) = @_;
    my @no = grep { $missing{$_} } @directives;
    return @no ? "needs @no, not in this build yet" : undef;
}

###########################################################################
# blue-green.conf: route to green, wait-healthy, flip, rollback

SKIP: {
    my $why = need('traffic_shift_api');
    skip($why, 1) if $why;

    my $t = TSTest->new(name => 'blue-green', workers => 2);
    $t->backend($_) for qw(p8001 p8002 p8101 p8102);
    prepare($t);
    my $template = example_template('blue-green.conf');
    $template = without_health($template) if $missing{health_check};
    $t->write_config($template);
    $t->start;

    my $pools = sub {
        my (%opts) = @_;
        my %seen;
        for (1 .. 40) {
            my $r = $t->get('/', port => 'p80', %opts);
            my $b = $r->{headers}{'x-backend'} // "status $r->{status}";
            my $p = $r->{headers}{'x-traffic-pool'} // '-';
            $seen{"$p:$b"}++;
        }
        return join ' ', sort keys %seen;
    };

    is($pools->(), 'blue:p8001 blue:p8002',
        'at start every request goes to the blue servers');
    is($pools->(headers => { 'X-Traffic-Pool' => 'green' }),
        'green:p8101 green:p8102',
        'a trusted client reaches green with X-Traffic-Pool: green');

    my $r = cli($t, 'wait-healthy', 'app', 'green', '--timeout', '20');
    is($r->{rc}, 0, 'wait-healthy app green: exit 0') or diag($r->{err});
    like($r->{out}, qr/2 of 2 servers up/, 'wait-healthy says 2 of 2 up');

    my $mark = $t->log_mark;
    $r = cli($t, 'flip', 'app', 'green');
    is($r->{rc}, 0, 'flip app green: exit 0') or diag($r->{err});
    like($r->{out}, qr/^\s+green\s+100\s/m, 'flip prints green at 100');
    is($pools->(), 'green:p8101 green:p8102',
        'after the flip every request goes to green');
    like($t->error_log(since => $mark), qr/\[notice\].*"app"/,
        'the change is logged at notice');

    $r = cli($t, 'status', 'app', '--json');
    is($r->{rc}, 0, 'status --json: exit 0');
    my $state = eval { JSON::PP->new->decode($r->{out}) } // {};
    is_deeply($state->{weights}, { blue => 0, green => 100 },
        'status --json: blue 0, green 100');
    is($state->{source}, 'api', 'status --json: source api');

    $r = cli($t, 'flip', 'app', 'blue');
    is($r->{rc}, 0, 'rollback: flip app blue: exit 0');
    is($pools->(), 'blue:p8001 blue:p8002', 'after the rollback: blue');

    # the reload keeps the runtime weights
    ok(cli($t, 'flip', 'app', 'green')->{rc} == 0, 'flip to green again');
    ok($t->reload, 'reload');
    is($pools->(), 'green:p8101 green:p8102', 'green after the reload');

    $t->stop;
}

###########################################################################
# canary-sticky.conf: sticky sessions, the canary grows, QA route

SKIP: {
    my $why = need('traffic_shift_api');
    skip($why, 1) if $why;

    my $t = TSTest->new(name => 'canary', workers => 2);
    $t->backend($_) for qw(p8001 p8002 p8003 p8201);
    prepare($t);
    my $template = example_template('canary-sticky.conf');
    $template = without_health($template) if $missing{health_check};
    $t->write_config($template);
    $t->start;

    my $N = 300;
    my $assign = sub {
        my %pool;
        for my $i (1 .. $N) {
            my $r = $t->get('/', port => 'p80',
                headers => { Cookie => "session=s$i" });
            $pool{$i} = $r->{headers}{'x-traffic-pool'} // '-';
        }
        return \%pool;
    };
    my $share = sub {
        my ($a) = @_;
        return 100 * (grep { $_ eq 'canary' } values %$a) / $N;
    };

    my $r = cli($t, 'wait-healthy', 'app', 'canary', '--timeout', '20');
    is($r->{rc}, 0, 'wait-healthy app canary') or diag($r->{err});

    $r = cli($t, 'canary', 'app', 'canary', '5', '--to');
    is($r->{rc}, 0, 'canary app canary 5 --to') or diag($r->{err});
    my $at5 = $assign->();
    my $s5 = $share->($at5);
    ok($s5 > 0 && $s5 < 15, "5%: $s5% of $N sessions on the canary");

    $r = cli($t, 'canary', 'app', 'canary', '25', '--to');
    is($r->{rc}, 0, 'canary app canary 25 --to') or diag($r->{err});
    my $at25 = $assign->();
    my $s25 = $share->($at25);
    ok($s25 > 15 && $s25 < 35, "25%: $s25% of $N sessions on the canary");
    my @back = grep { $at5->{$_} eq 'canary' && $at25->{$_} ne 'canary' }
        1 .. $N;
    is(scalar @back, 0, 'no session left the canary when it grew');

    my $again = $assign->();
    is_deeply($again, $at25, 'every session keeps its pool');

    is($t->get('/', port => 'p80',
               headers => { 'X-Traffic-Pool' => 'canary',
                            Cookie => 'session=s1' })
         ->{headers}{'x-backend'}, 'p8201',
       'QA: X-Traffic-Pool: canary reaches the canary server');
    my $stable = (grep { $at25->{$_} eq 'stable' } 1 .. $N)[0];
    is($t->get('/', port => 'p80',
               headers => { Cookie => "session=s$stable; "
                                      . 'traffic_pool=canary' })
         ->{headers}{'x-traffic-pool'}, 'canary',
       'QA: the traffic_pool=canary cookie reaches the canary');

    $r = cli($t, 'canary', 'app', 'canary', '0', '--to');
    is($r->{rc}, 0, 'rollback: canary app canary 0 --to');
    is($share->($assign->()), 0, 'after the rollback no session on canary');

    $t->stop;
}

###########################################################################
# admin-api-hardened.conf

SKIP: {
    my $why = need('traffic_shift_api');
    skip($why, 1) if $why;

    my $t = TSTest->new(name => 'hardened');
    $t->backend($_) for qw(p8001 p8002 p8101 p8102);
    prepare($t);
    $t->write_config(example_template('admin-api-hardened.conf'));
    $t->start;

    my $ro = 'http://127.0.0.1:' . $t->port('p8081') . '/traffic/';
    my $rw = 'http://127.0.0.1:' . $t->port('p8081') . '/traffic-admin/';

    my $r = cli($t, $ro, 'status', 'app');
    is($r->{rc}, 0, 'read-only location: status works without password');

    $r = cli($t, $ro, 'flip', 'app', 'green');
    is($r->{rc}, 7, 'read-only location: a change is denied, exit 7');
    like($r->{err}, qr/\(read_only, HTTP 403\)/, '... read_only, HTTP 403');

    $r = cli($t, $rw, 'flip', 'app', 'green');
    is($r->{rc}, 7, 'admin location without password: exit 7');
    like($r->{err}, qr/HTTP 401, authentication required/,
        '... says authentication is required');

    $r = cli($t, $rw, { TRAFFIC_SHIFT_USER => 'deploy:wrong' },
        'flip', 'app', 'green');
    is($r->{rc}, 7, 'wrong password: exit 7');

    $r = cli($t, $rw, { TRAFFIC_SHIFT_USER => 'deploy:secret-deploy-pw' },
        'flip', 'app', 'green');
    is($r->{rc}, 0, 'address and password: the flip is done')
        or diag($r->{err});
    is($t->get('/', port => 'p80')->{headers}{'x-backend'} =~ /^p810[12]$/
        ? 1 : 0, 1, 'traffic goes to green');

    $r = cli($t, $rw, 'status', '--user', 'deploy:secret-deploy-pw');
    is($r->{rc}, 0, '--user works too');

    my $p = $t->get('/traffic/upstreams', port => 'p80');
    ok(!$p->{json} || !exists $p->{json}{app},
        'the public port has no API');
    $p = $t->get('/nothing', port => 'p8081');
    is($p->{status}, 404, 'the admin listener answers 404 elsewhere');

    like($t->read_file('traffic-admin.log') // '', qr/PATCH \/traffic-admin/,
        'admin requests have their own access log');

    $t->stop;
}

###########################################################################
# persistence.conf: the weights set through the API survive a restart

SKIP: {
    my $why = need('traffic_shift_api', 'traffic_shift_state');
    skip($why, 1) if $why;

    my $t = TSTest->new(name => 'persistence');
    $t->backend($_) for qw(p8001 p8002 p8101 p8102 p8201 p8301);
    prepare($t);
    my $template = example_template('persistence.conf');
    $t->write_config($template);
    $t->start;

    my $r = cli($t, 'flip', 'web', 'green');
    is($r->{rc}, 0, 'flip web green') or diag($r->{err});
    $r = cli($t, 'set', 'api', 'stable=75', 'canary=25', '--json');
    is($r->{rc}, 0, 'set api stable=75 canary=25');
    my $j = eval { JSON::PP->new->decode($r->{out}) } // {};
    ok($j->{persisted}, 'the answer says the change was saved');
    ok(-s $t->testdir . '/traffic-shift/state.json', 'the state file exists');

    $t->stop;
    $t->start;

    $r = cli($t, 'status', '--json');
    $j = eval { JSON::PP->new->decode($r->{out}) } // {};
    is_deeply($j->{web}{weights}, { blue => 0, green => 100 },
        'after a restart web is still all green');
    is_deeply($j->{api}{weights}, { stable => 75, canary => 25 },
        'and api still 75/25');
    is($j->{web}{source}, 'state', 'restored from the state file');
    like($t->get('/', port => 'p80')->{headers}{'x-backend'} // '',
        qr/^p810[12]$/, 'requests go to green');

    $t->stop;
}

done_testing();
