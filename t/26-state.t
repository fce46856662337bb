#!/usr/bin/perl

# Runtime state across reload and restart: weights set through the API
# survive "nginx -s reload"; with traffic_shift_state they and the
# admin-down marks survive a stop and start; a missing, corrupt or foreign
# state file is logged and ignored, never overwritten before a change; a
# failed write leaves the change live and says so; the file is never left
# half-written, even when workers are killed during a stream of changes.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use JSON::PP ();
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use TSTest;
use TSH2;

my $t = TSTest->new(workers => 2);
$t->backend($_) for qw(blue1 blue2 green1 canary1);

my $conf = <<'EOF';
http {
    %%STATE%%

    upstream app_blue   { server 127.0.0.1:%%PORT_blue1%%;
                          server 127.0.0.1:%%PORT_blue2%%; }
    upstream app_green  { server 127.0.0.1:%%PORT_green1%%; }
    upstream app_canary { server 127.0.0.1:%%PORT_canary1%%; }

    traffic_shift app {
        pool blue   app_blue   weight=100;
        pool green  app_green;
        %%POOLS%%
    }

    traffic_shift other {
        pool blue   app_blue   weight=60;
        pool canary app_canary weight=40;
    }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        add_header X-Pool $traffic_shift_pool always;
        location / { proxy_pass http://app; }
    }

    server {
        listen 127.0.0.1:%%PORT_api%%;
        %%LISTEN_H2_h2%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
}
EOF

sub config {
    my (%o) = @_;
    my $c = $conf;
    my $state = defined $o{state} ? "traffic_shift_state $o{state};" : '';
    $c =~ s/%%STATE%%/$state/;
    my $pools = $o{canary} ? 'pool canary app_canary;' : '';
    $c =~ s/%%POOLS%%/$pools/;
    return $c;
}

sub api { my ($m, $p, %o) = @_; $t->http($m, $p, port => 'api', %o) }
sub get { api('GET', "/traffic$_[0]")->{json} }
sub patch { api('PATCH', "/traffic$_[0]", json => $_[1]) }

sub pools {
    my ($n) = @_;
    my %p;
    $p{$t->get('/', quiet => 1)->{headers}{'x-pool'} // 'none'}++ for 1 .. $n;
    return \%p;
}

my $dir = $t->testdir;
my $file = "$dir/traffic-shift.json";

sub read_state {
    my $text = $t->read_file($file);
    return undef unless defined $text;
    return eval { JSON::PP->new->decode($text) };
}

# without a state file: runtime weights survive reload

$t->write_config(config(canary => 1));
$t->start;

my $r = patch('/upstreams/app', { weights => { blue => 80, canary => 20 } });
is($r->{status}, 200, 'change without a state file');
my $before = get('/upstreams/app');
ok($t->reload, 'reload');
my $after = get('/upstreams/app');
is_deeply($after, $before, 'reload: weights, generation, source, time kept');
is_deeply(pools(100), { blue => 80, canary => 20 },
    'reload: traffic follows the runtime weights');
is(get('/upstreams/other')->{source}, 'config',
    'an upstream never changed still follows the configuration');

ok($t->reload(config(canary => 1)), 'second reload');
is_deeply(get('/upstreams/app'), $before, 'second reload: kept');

$t->stop;
$t->start;
is(get('/upstreams/app')->{source}, 'config',
    'stop and start without a state file: configuration weights');

# with a state file

$t->stop;
my $mark = $t->log_mark;
$t->write_config(config(canary => 1, state => $file));
$t->start;
like($t->error_log(since => $mark),
    qr/\[info\] .*traffic_shift_state "\Q$file\E" does not exist yet/,
    'missing state file: info');
ok(!-e $file, 'not created at start');

$r = patch('/upstreams/app', { weights => { blue => 12.5, green => 54.17,
                                            canary => 33.33 } });
is($r->{status}, 200, 'change: 200');
ok($r->{json}{persisted}, 'change: persisted true');
my $saved = read_state();
ok($saved, 'the state file parses');
is($saved->{version}, 1, 'state file version');
is_deeply($saved->{upstreams}{app}{weights},
    { blue => 12.5, green => 54.17, canary => 33.33 }, 'weights saved');
is($saved->{upstreams}{app}{generation}, $r->{json}{generation},
    'generation saved');
is($saved->{upstreams}{other}{source}, 'config',
    'weights from the configuration are saved as such, with their generation');
ok(!-e "$file.tmp", 'no temporary file left');

$r = patch('/health/app_blue/servers/1', { down => JSON::PP::true });
ok($r->{json}{persisted}, 'admin-down: persisted');
is_deeply(read_state()->{admin_down},
    ['app_blue/127.0.0.1:' . $t->port('blue2')], 'admin-down mark saved');

# over HTTP/2 too: the stream waits for the write
my $h2 = TSH2::request(port => $t->port('h2'), method => 'PATCH',
    path => '/traffic/upstreams/app',
    headers => ['content-type' => 'application/json'],
    body => '{"weights":{"blue":12.5,"green":54.17,"canary":33.33}}',
    frame => 10);
ok($h2->{status} == 200 && $h2->{json}{persisted},
    'HTTP/2 change: 200, persisted');
is(read_state()->{upstreams}{app}{generation}, $h2->{json}{generation},
    'HTTP/2 change: saved');

# clients that go away while the file is written: the change is made
# and saved all the same, the worker carries on

my $gen = get('/upstreams/app')->{generation};
for my $i (1 .. 10) {
    my $body = '{"active":"' . ($i % 2 ? 'green' : 'blue') . '"}';
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port('api'))
        or die "connect: $!";
    print $s "PATCH /traffic/upstreams/app HTTP/1.1\r\nHost: x\r\n"
        . "Content-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\n\r\n$body";
    close $s;
    TSH2::request(port => $t->port('h2'), method => 'PATCH',
        path => '/traffic/upstreams/app',
        headers => ['content-type' => 'application/json'],
        body => $body, cancel => 1);
}
# an HTTP/1.1 body is complete when the client leaves: it is applied; an
# HTTP/2 stream reset with its body may be dropped before it is read
ok($t->wait_for(sub { get('/upstreams/app')->{generation} >= $gen + 10 },
                timeout => 5, what => 'the changes'),
   'clients gone before the answer: their changes were made');
ok($t->wait_for(sub {
       (read_state() // {})->{upstreams}{app}{generation}
           == get('/upstreams/app')->{generation}
   }, timeout => 5, what => 'the last change saved'),
   'and the last one saved');
$r = patch('/upstreams/app', { weights => { blue => 12.5, green => 54.17,
                                            canary => 33.33 } });
ok($r->{status} == 200 && $r->{json}{persisted}, 'the API still answers');

$before = get('/upstreams/app');

# restart: saved weights and marks win over the configuration

$t->stop;
$mark = $t->log_mark;
$t->start;
my $log = $t->error_log(since => $mark);
like($log, qr/\[notice\] .*traffic_shift "app": weights blue=12\.5 green=54\.17 canary=33\.33 restored from "\Q$file\E", generation $before->{generation}/,
    'restart: restore logged');
like($log, qr/server "127\.0\.0\.1:\d+" of upstream "app_blue" stays admin-down/,
    'restart: admin-down restore logged');
$after = get('/upstreams/app');
is_deeply($after->{weights}, $before->{weights}, 'restart: weights restored');
is($after->{generation}, $before->{generation},
    'restart: generation restored');
is($after->{updated}, $before->{updated}, 'restart: time of the change kept');
is($after->{source}, 'state', 'restart: source state');
is(get('/health/app_blue/servers/1')->{state}, 'admin_down',
    'restart: admin-down restored');
is(get('/upstreams/other')->{source}, 'config',
    'restart: the other upstream from the configuration');
my $p = pools(10000);
is_deeply($p, { blue => 1250, green => 5417, canary => 3333 },
    'restart: traffic follows the restored weights')
    or diag(explain $p);

ok($t->reload, 'reload after a restore');
is(get('/upstreams/app')->{source}, 'state', 'reload keeps source state');

# the If-Match of a deploy script is still good after the restart

$r = api('PATCH', '/traffic/upstreams/app', json => { active => 'blue' },
         headers => { 'If-Match' => "\"$before->{generation}\"" });
is($r->{status}, 200, 'If-Match with the generation before the restart');
patch('/health/app_blue/servers/1', { down => JSON::PP::false });
is_deeply(read_state()->{admin_down}, [], 'mark removed from the file');

# a state file for other pools: ignored for that upstream

$t->stop;
$mark = $t->log_mark;
$t->write_config(config(state => $file));
$t->start;
like($t->error_log(since => $mark),
    qr/the pools of upstream "app" changed, its saved weights are ignored/,
    'pools changed: logged');
is(get('/upstreams/app')->{source}, 'config',
    'pools changed: configuration weights');
$t->stop;
$t->write_config(config(canary => 1, state => $file));

# a corrupt file: warned, ignored, not overwritten until a change

for my $bad (['{"version":1,"upstreams":{"app":', 'is corrupt'],
             ["\x00\x01garbage", 'is corrupt'],
             ['[1,2,3]', 'is not a state file'],
             ['{"format":"nginx-traffic-shift-state","version":99,'
              . '"upstreams":{}}', 'is not a state file'],
             ['{"version":1,"upstreams":{}}', 'is not a state file'],
             ['{"format":"nginx-traffic-shift-state","version":1,'
              . '"upstreams":{"app":{"weights":{"blue":70,'
              . '"green":20,"canary":20},"generation":3}}}',
              'invalid state of upstream'])
{
    my ($text, $msg) = @$bad;
    $t->write_file($file, $text);
    $mark = $t->log_mark;
    $t->start;
    like($t->error_log(since => $mark),
        qr/\[warn\] .*traffic_shift_state.*\Q$msg\E/, "$msg: warning");
    is(get('/upstreams/app')->{source}, 'config', "$msg: configuration");
    is($t->read_file($file), $text, "$msg: file left as it was");
    $t->stop;
    is($t->read_file($file), $text, "$msg: still there after a stop");
}

$t->start;
$r = patch('/upstreams/app', { active => 'green' });
ok($r->{json}{persisted}, 'a change replaces the corrupt file');
is(read_state()->{upstreams}{app}{weights}{green}, 100, 'with valid state');

# a write that fails: the change is live, the answer says it is not saved

$t->stop;
mkdir "$dir/ro" or die "mkdir: $!";
chmod 0555, "$dir/ro";
$t->write_config(config(canary => 1, state => "$dir/ro/state.json"));
$t->start;
$mark = $t->log_mark;
$r = patch('/upstreams/app', { active => 'canary' });
is($r->{status}, 200, 'failed write: still 200');
ok(!$r->{json}{persisted}, 'failed write: persisted false');
like($r->{json}{warning}, qr/live but not saved: open\(\) "\Q$dir\E\/ro\/state\.json\.lock" failed \(13: Permission denied\)/,
    'failed write: the answer says why');
is(get('/upstreams/app')->{weights}{canary}, 100,
    'failed write: the change is live');
is_deeply(pools(20), { canary => 20 }, 'failed write: traffic follows it');
like($t->error_log(since => $mark),
    qr/\[error\] .*traffic_shift_state: open\(\) .* failed .*the change is live but not saved/,
    'failed write: logged');
$t->stop;
chmod 0755, "$dir/ro";

# a directory that does not exist: a warning at start, the change is live

$t->write_config(config(canary => 1, state => "$dir/missing/state.json"));
$mark = $t->log_mark;
$t->start;
like($t->error_log(since => $mark),
    qr/\[warn\] .*the directory "\Q$dir\E\/missing" of traffic_shift_state is missing, changes will not be saved \(2: No such file or directory\)/,
    'missing directory: warned at start');
$r = patch('/upstreams/app', { active => 'green' });
ok($r->{status} == 200 && !$r->{json}{persisted},
    'missing directory: 200, not persisted');
is(get('/upstreams/app')->{weights}{green}, 100, 'and live');
$t->stop;

# workers killed during a stream of changes: the file always parses

$t->write_config(config(canary => 1, state => $file));
$t->start;

my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    my $end = time + 4;
    my $i = 0;
    while (time < $end) {
        my $pool = (qw(blue green canary))[$i++ % 3];
        $t->http('PATCH', '/traffic/upstreams/app', port => 'api',
                 json => { active => $pool }, timeout => 2, quiet => 1);
    }
    POSIX::_exit(0);
}

my ($reads, $broken, $kills, %generations) = (0, 0, 0);
my $end = time + 3.5;
while (time < $end) {
    for (1 .. 20) {
        my $text = $t->read_file($file);
        my $s = defined $text && eval { JSON::PP->new->decode($text) };
        $reads++;
        $broken++ unless $s;
        $generations{$s->{upstreams}{app}{generation}}++ if $s;
        sleep 0.005;
    }
    my @w = $t->worker_pids;
    kill 'KILL', @w;
    $kills += @w;
    $t->wait_for(sub {
        my @n = $t->worker_pids;
        @n == 2 && !grep { my $o = $_; grep { $_ == $o } @w } @n;
    }, timeout => 5, what => 'workers respawned');
}
waitpid($pid, 0);

ok($kills >= 10, "$kills workers killed with SIGKILL");
is($broken, 0, "the file parsed at each of $reads reads during the kills");
ok(keys %generations >= 10, 'the file was rewritten meanwhile: '
    . keys(%generations) . ' generations seen');
$t->allow_log(qr/exited on signal 9|was locked by/);

my $last = get('/upstreams/app');
$t->stop;
$saved = read_state();
ok($saved && $saved->{version} == 1, 'after the kills: the file parses');
ok($saved->{upstreams}{app}{generation} <= $last->{generation},
    'it holds a state no newer than the zone');

$mark = $t->log_mark;
$t->start;
# nginx 1.25.1+ warns of "listen ... http2" itself: not ours
unlike($t->error_log(since => $mark),
    qr/\[warn\](?!.*"listen \.\.\. http2" directive is deprecated)/,
    'start after the kills: no warning');
$after = get('/upstreams/app');
is($after->{source}, 'state', 'start after the kills: restored');
is($after->{generation}, $saved->{upstreams}{app}{generation},
    'the generation saved last');

# the thread pool the writes use: one thread per worker, or the one
# configured before http{} (without threads, workers write themselves)

SKIP: {
    my $nginx = $ENV{TS_NGINX} || '/usr/sbin/nginx';
    skip 'nginx without threads', 3
        unless `$nginx -V 2>&1` =~ /--with-threads/;

    my @w = $t->worker_pids;
    my @threads = map { scalar(() = glob("/proc/$_/task/*")) } @w;
    is_deeply(\@threads, [map { 2 } @w],
        'each worker has one thread besides itself for the state file');
    $t->stop;

    # on a line of its own: the harness adds its globals to "http {"
    my $tp = "thread_pool traffic_shift threads=3;\n"
        . config(canary => 1, state => $file);
    $t->write_config($tp);
    $t->start;
    @threads = map { scalar(() = glob("/proc/$_/task/*")) } $t->worker_pids;
    is_deeply(\@threads, [4, 4], 'thread_pool traffic_shift threads=3 is used');
    ok(patch('/upstreams/app', { active => 'green' })->{json}{persisted},
       'and writes the file');
}

# traffic_shift_state off

my ($rc, $out) = $t->nginx_t(config(state => 'off'));
is($rc, 0, 'traffic_shift_state off: nginx -t passes') or diag($out);

done_testing();
