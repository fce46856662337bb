#!/usr/bin/perl

# The status page in a real browser (headless Chromium through
# chromedriver): served by the API location with a strict
# Content-Security-Policy, it shows the weights and the servers' states
# without a console error, follows a change made through the API, and on a
# write=on location its controls change the weights, drain a server and act
# on a rollout; a read-only location shows no control.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use TSTest;
use TSBrowser;

TSBrowser->require_or_skip;

my $t = TSTest->new;
$t->backend($_) for qw(blue1 blue2 green1 green2);

$t->write_config(<<'EOF');
http {
    upstream u_blue  { server 127.0.0.1:%%PORT_blue1%%;
                       server 127.0.0.1:%%PORT_blue2%%; }
    upstream u_green { server 127.0.0.1:%%PORT_green1%%;
                       server 127.0.0.1:%%PORT_green2%% down; }
    traffic_shift app { pool blue u_blue weight=100; pool green u_green; }

    server {
        listen 127.0.0.1:%%PORT_main%%;
        location / { proxy_pass http://app; }
    }
    server {
        listen 127.0.0.1:%%PORT_api%%;
        location /traffic/ { traffic_shift_api write=on; }
    }
    server {
        listen 127.0.0.1:%%PORT_ro%%;
        location /traffic/ { traffic_shift_api; }
    }
    server {
        listen 127.0.0.1:%%PORT_evil%%;
        location / { default_type text/html; return 200 "<p>other site"; }
    }
}
EOF
$t->start;

my $api = 'http://127.0.0.1:' . $t->port('api') . '/traffic/';
my $ro = 'http://127.0.0.1:' . $t->port('ro') . '/traffic/';
my $blue1 = '127.0.0.1:' . $t->port('blue1');
my $green2 = '127.0.0.1:' . $t->port('green2');

sub weights {
    my $r = $t->get('/traffic/upstreams/app', port => 'api', quiet => 1);
    return $r->{json}{weights};
}

sub rollout_state {
    my $r = $t->get('/traffic/upstreams/app/rollout', port => 'api',
                    quiet => 1);
    return $r->{json} ? $r->{json}{state} // '' : '';
}

# --- over HTTP: the page, its parts and their headers ---

my $r = $t->get('/traffic/', port => 'api',
                headers => { Accept => 'text/html,application/xhtml+xml,'
                                       . 'application/xml;q=0.9,*/*;q=0.8' });
is($r->{status}, 200, 'GET / for a browser: 200');
like($r->{headers}{'content-type'}, qr{^text/html},
     'GET / for a browser: HTML');
my $csp = $r->{headers}{'content-security-policy'} // '';
like($csp, qr/default-src 'none'/, "CSP: default-src 'none'");
like($csp, qr/script-src 'self'/, "CSP: script-src 'self'");
like($csp, qr/frame-ancestors 'none'/, "CSP: frame-ancestors 'none'");
unlike($csp, qr/unsafe/, 'CSP: nothing unsafe');
like($r->{headers}{vary} // '', qr/Accept/i, 'GET /: Vary: Accept');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'nosniff');
like($r->{body}, qr/<script src="dashboard\.js" defer><\/script>/,
     'the script is a file of its own');
unlike($r->{body}, qr/<script>|<style|style=|\son\w+=/i,
       'no inline script, style or event handler');
unlike($r->{body}, qr{(?:src|href)="(?:https?:)?//}i, 'no external asset');

my $size = length $r->{body};
for my $f (qw(dashboard dashboard.css dashboard.js)) {
    my $a = $t->get("/traffic/$f", port => 'api');
    is($a->{status}, 200, "GET /$f: 200");
    $size += length $a->{body} if $f ne 'dashboard';
    is($a->{headers}{'content-security-policy'}, $csp, "GET /$f: CSP");
}
like($t->get('/traffic/dashboard.js', port => 'api')
     ->{headers}{'content-type'}, qr{^application/javascript},
     'dashboard.js: JavaScript');
like($t->get('/traffic/dashboard.css', port => 'api')
     ->{headers}{'content-type'}, qr{^text/css}, 'dashboard.css: CSS');
cmp_ok($size, '<', 96 * 1024, "the page is small ($size bytes)");
is($t->head('/traffic/dashboard', port => 'api')->{status}, 200, 'HEAD');

$r = $t->get('/traffic/', port => 'api');
is($r->{headers}{'content-type'}, 'application/json',
   'GET / without Accept: JSON, as before');
is($r->{json}{write}, JSON::PP::true, 'GET / says write=on');
like($r->{headers}{vary} // '', qr/Accept/i, 'GET / JSON: Vary: Accept');
$r = $t->get('/traffic/', port => 'ro', headers => { Accept => '*/*' });
is($r->{json}{write}, JSON::PP::false, 'GET / read-only: write false');
is($t->get('/traffic/dashboard.html', port => 'api')->{status}, 404,
   'other names: 404 as before');

# --- in the browser ---

my $b = TSBrowser->new(port => $t->port('chromedriver'), dir => $t->testdir);

# a WebDriver error fails the test, with a screenshot
eval { browser(); 1 } or fail("the browser test stopped: $@");

$b->shot_on_failure('dashboard');
$b->quit;

done_testing();

sub browser {

$b->get($api);

# what the page shows, read from its DOM
sub shown {
    return $b->script(<<'JS');
var o = { weights: {}, states: {}, reasons: {}, polls: 0 };
document.querySelectorAll('[data-weight]').forEach(function (e) {
  o.weights[e.getAttribute('data-pool')] = e.textContent; });
document.querySelectorAll('[data-state]').forEach(function (e) {
  o.states[e.getAttribute('data-state')] = e.textContent; });
document.querySelectorAll('[data-reason]').forEach(function (e) {
  var k = e.parentNode.querySelector('[data-state]');
  o.reasons[k.getAttribute('data-state')] = e.getAttribute('data-reason'); });
o.polls = +(document.body.getAttribute('data-polls') || 0);
o.buttons = document.querySelectorAll('button[data-flip]').length;
o.mode = document.getElementById('mode').textContent;
return o;
JS
}

# two more polls of the page: what it read is newer than any change made
# before, so its controls send the current ETag
sub settle {
    my $p = shown()->{polls};
    return $b->wait_until(sub { shown()->{polls} >= $p + 2 },
                          what => 'two polls of the page');
}

my $s = $b->wait_until(sub { my $x = shown(); $x->{polls} >= 2 && $x },
                       what => 'the page to load the API');
is_deeply($s->{weights}, { blue => '100%', green => '0%' },
          'the page shows the weights');
is($s->{states}{"u_blue/$blue1"}, 'up', 'a server up');
is($s->{states}{"u_green/$green2"}, 'down', 'a server down');
is($s->{reasons}{"u_green/$green2"}, 'config',
   'its reason: down in the configuration');
is($s->{reasons}{"u_blue/$blue1"}, '', 'no reason for a server up');
is($b->script('return document.title'), 'traffic_shift status', 'title');
is($b->script('return document.querySelectorAll("svg polyline").length'),
   6, 'charts: three per pool');

my @errors = $b->console_errors;
is_deeply(\@errors, [], 'no console error') or diag(explain(\@errors));

# accessible: every control has a name, every field a label
my $unnamed = $b->script(<<'JS');
var bad = [];
document.querySelectorAll('button, select, input').forEach(function (e) {
  var name = e.getAttribute('aria-label') || e.textContent.trim()
             || (e.labels && e.labels.length && e.labels[0].textContent);
  if (!name) { bad.push(e.outerHTML); }
});
return bad;
JS
is_deeply($unnamed, [], 'every control has an accessible name');
is($b->script('return document.documentElement.lang'), 'en', 'lang');

# a change through the API shows up
$r = $t->patch('/traffic/upstreams/app', { weights => { blue => 70,
                                                        green => 30 } },
               port => 'api');
is($r->{status}, 200, 'weights changed through the API');
ok($b->wait_until(sub { shown()->{weights}{green} eq '30%' },
                  what => 'the page to show green 30%'),
   'the page follows the change');
like($b->script('return document.querySelector("[data-upstream-card] .bar")'
                . '.getAttribute("aria-label")'), qr/green 30%/,
     'the weight bar says it');

# controls: flip
settle();
$b->click('[data-flip="app/green"]');
ok($b->wait_until(sub { weights()->{green} == 100 },
                  what => 'the flip to green'),
   'the flip button sent all traffic to green');
ok($b->wait_until(sub { shown()->{weights}{green} eq '100%' }),
   'and the page shows it');
like($b->text('#message'), qr/^Done/, 'the page says it is done');

# canary percentage
settle();
$b->script('document.querySelector("[data-canary-pool=app]").value = '
           . '"blue"');
$b->type('[data-canary-percent=app]', '12.5', clear => 1);
$b->click('[data-canary-set=app]');
ok($b->wait_until(sub { weights()->{blue} == 12.5 },
                  what => 'the canary weights'),
   'canary: blue 12.5%');
is(weights()->{green}, 87.5, 'canary: the rest to green');
ok($b->wait_until(sub { shown()->{weights}{blue} eq '12.5%' }),
   'the page shows the canary');

# drain a server, then bring it back
sub admin_down {
    return $t->get('/traffic/health/u_blue/servers/0', port => 'api',
                   quiet => 1)->{json}{admin_down};
}
settle();
$b->click(qq{[data-drain="u_blue/$blue1"]});
ok($b->wait_until(sub { admin_down() }, what => 'the drain'),
   'drain: the server is admin-down');
ok($b->wait_until(sub { shown()->{reasons}{"u_blue/$blue1"} eq 'admin' }),
   'the page shows it drained');
is(shown()->{states}{"u_blue/$blue1"}, 'admin_down', 'state admin_down');
$b->wait_until(sub { $b->text(qq{[data-drain="u_blue/$blue1"]})
                     eq 'Bring back' });
settle();
$b->click(qq{[data-drain="u_blue/$blue1"]});
ok($b->wait_until(sub { !admin_down() }),
   'bring back: the server takes traffic again');

@errors = $b->console_errors;
is_deeply(\@errors, [], 'no console error after the changes')
    or diag(explain(\@errors));

# a rollout: its step and countdown, pause and abort
$r = $t->put('/traffic/upstreams/app/rollout', {
    pool => 'green', baseline => ['blue'], steps => [10, 50, 100],
    interval => '60s', min_requests => 1000 }, port => 'api');
is($r->{status}, 201, 'a rollout started through the API');
ok($b->wait_until(sub { ($b->script(
       'var e = document.querySelector("[data-rollout-state=app]");'
       . 'return e && e.textContent') // '') eq 'progressing' },
       what => 'the rollout on the page'), 'the page shows the rollout');
like($b->script('return document.querySelector("[data-countdown=app]")'
                . '.textContent'), qr/^in \d+ s$/, 'with its countdown');
settle();
$b->click('[data-rollout-action="app/pause"]');
ok($b->wait_until(sub { rollout_state() eq 'paused' },
                  what => 'the pause'), 'pause button: paused');
ok($b->wait_until(sub { $b->script(
       'return document.querySelector("[data-rollout-state=app]")'
       . '.textContent') eq 'paused' }, what => 'the page to show it'),
   'the page shows the rollout paused');
ok($b->find('[data-rollout-action="app/resume"]'), 'resume offered');
ok($b->find('[data-rollout-action="app/abort"]'), 'abort offered');
settle();
$b->click('[data-rollout-action="app/abort"]');
ok($b->wait_until(sub { rollout_state() eq 'aborted' },
                  what => 'the abort'), 'abort button: aborted');

# a change from a page that read an old generation: 412, in plain words
$b->click('#pause');
ok($b->wait_until(sub { $b->script(
       'return document.body.getAttribute("data-busy")') eq '0' }),
   'updates paused');
$r = $t->patch('/traffic/upstreams/app', { active => 'blue' },
               port => 'api');
is($r->{status}, 200, 'someone else changes the weights');
$b->click('[data-flip="app/green"]');
ok($b->wait_until(sub { $b->text('#message') =~ /Someone else changed it/ },
                  what => 'the 412 message'),
   '412: the page says someone else changed it');
is(weights()->{blue}, 100, '412: nothing changed');
$b->click('#pause');
$b->console_errors;            # the 412 is logged by the browser

# phone-sized: nothing wider than the screen
$b->set_size(390, 844);
ok($b->wait_until(sub { $b->script(
       'return document.documentElement.scrollWidth <= window.innerWidth') },
       timeout => 5), 'readable on a phone: no horizontal scrolling');
$b->set_size(1200, 900);

# another site's page cannot change anything, even with the header
$b->get('http://127.0.0.1:' . $t->port('evil') . '/');
my $res = $b->script_async(<<'JS', $api . 'upstreams/app');
var done = arguments[arguments.length - 1], url = arguments[0], out = [];
fetch(url, { method: 'PATCH',
  headers: { 'Content-Type': 'application/json', 'X-Traffic-Shift': '1' },
  body: '{"active":"green"}' })
  .then(function (r) { out.push('cors:' + r.status); },
        function (e) { out.push('cors:refused'); })
  .then(function () { done(out); });
JS
is($res->[0], 'cors:refused', 'another site: the fetch with the header '
   . 'is stopped by the browser (no CORS approval)');
is(weights()->{green}, 0, 'another site: nothing changed');
$b->console_errors;

# read-only location: no control
$b->get($ro);
$s = $b->wait_until(sub { my $x = shown(); $x->{polls} >= 1 && $x },
                    what => 'the read-only page');
is($s->{buttons}, 0, 'read-only: no control');
is($b->script('return document.querySelectorAll("button[data-drain], '
              . '[data-canary-set]").length'), 0,
   'read-only: no drain, no canary');
like($s->{mode}, qr/read-only/i, 'read-only: says so');
is_deeply($s->{weights}, { blue => '100%', green => '0%' },
          'read-only: the weights');
@errors = $b->console_errors;
is_deeply(\@errors, [], 'read-only: no console error')
    or diag(explain(\@errors));

}
