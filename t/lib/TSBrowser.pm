package TSBrowser;

# A headless Chromium driven through chromedriver (WebDriver: HTTP and
# JSON), with Perl core modules only (HTTP::Tiny, JSON::PP).  One browser
# per test file: start it once, load pages, run scripts, click.
#
#   my ($ok, $why) = TSBrowser->available;
#   TSBrowser->require_or_skip;       # skip_all without the browser,
#                                     # unless CI is set: then fail
#   my $b = TSBrowser->new(port => $t->port('chromedriver'),
#                          dir => $t->testdir);
#   $b->get("http://127.0.0.1:$port/traffic/dashboard");
#   my $v = $b->script('return document.title');
#   $b->click('[data-flip="app/green"]');
#   $b->wait_until(sub { ... }, timeout => 10, what => '...');
#   my @errors = $b->console_errors;  # SEVERE browser log entries
#   $b->screenshot("$dir/page.png");
#   $b->quit;                         # also at exit
#
# Environment: TS_CHROMEDRIVER, TS_CHROMIUM (default /usr/bin/chromedriver,
# /usr/bin/chromium).

use strict;
use warnings;

use Carp qw(croak);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use JSON::PP ();
use MIME::Base64 qw(decode_base64);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->canonical->allow_nonref;
my $ELEMENT = 'element-6066-11e4-a52e-4f735466cecf';   # W3C element key
my @LIVE;

sub chromedriver { $ENV{TS_CHROMEDRIVER} // '/usr/bin/chromedriver' }
sub chromium { $ENV{TS_CHROMIUM} // '/usr/bin/chromium' }

sub available {
    for my $f (chromedriver(), chromium()) {
        return (0, "$f is missing (apt-get install chromium "
                   . "chromium-driver, or scripts/install-deps)")
            unless -x $f;
    }
    return (1, '');
}

# Without the browser: the test is skipped on a developer's machine, and
# fails in CI (CI set), where scripts/install-deps must have installed it.
sub require_or_skip {
    my ($ok, $why) = available();
    return 1 if $ok;
    if ($ENV{CI} && $ENV{CI} ne 'false') {
        Test::More::fail("browser test: $why");
        Test::More::done_testing();
        exit 1;
    }
    Test::More::plan(skip_all => "no browser: $why (CI would fail)");
}

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        port => $o{port} // croak('TSBrowser: port required'),
        dir => $o{dir},
        width => $o{width} // 1200,
        height => $o{height} // 900,
        timeout => $o{timeout} // 30,
        http => HTTP::Tiny->new(timeout => $o{timeout} // 30),
        profile => tempdir('ts-chromium-XXXXXX', TMPDIR => 1, CLEANUP => 1),
    }, $class;
    $self->{base} = "http://127.0.0.1:$self->{port}";

    my $log = $self->{dir} ? "$self->{dir}/chromedriver.log" : '/dev/null';
    my $pid = fork() // croak "TSBrowser: fork: $!";
    if ($pid == 0) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $log);
        open(STDERR, '>&', \*STDOUT);
        no warnings 'exec';
        exec { chromedriver() } chromedriver(), "--port=$self->{port}",
            '--allowed-ips=127.0.0.1';
        POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    push @LIVE, $self;

    my $deadline = time + 20;
    for (;;) {
        my $r = $self->{http}->get("$self->{base}/status");
        last if $r->{success}
            && eval { $JSON->decode($r->{content})->{value}{ready} };
        croak "TSBrowser: chromedriver did not start (see $log)"
            if time > $deadline || waitpid($pid, WNOHANG) == $pid;
        sleep 0.1;
    }

    my $caps = {
        browserName => 'chrome',
        'goog:chromeOptions' => {
            binary => chromium(),
            args => [
                '--headless=new', '--no-sandbox', '--disable-gpu',
                '--disable-dev-shm-usage', '--no-first-run',
                '--no-default-browser-check', '--disable-extensions',
                '--disable-background-networking', '--disable-sync',
                '--password-store=basic', '--use-mock-keychain',
                "--user-data-dir=$self->{profile}",
                "--window-size=$self->{width},$self->{height}",
            ],
        },
        'goog:loggingPrefs' => { browser => 'ALL' },
    };
    my $v = $self->_cmd('POST', '/session', {
        capabilities => { alwaysMatch => $caps },
    });
    $self->{session} = $v->{sessionId}
        // croak 'TSBrowser: no session: ' . $JSON->encode($v);
    return $self;
}

sub _cmd {
    my ($self, $method, $path, $body) = @_;
    my $r = $self->{http}->request($method, $self->{base} . $path, {
        headers => { 'Content-Type' => 'application/json; charset=utf-8' },
        defined $body ? (content => $JSON->encode($body)) : (),
    });
    my $data = eval { $JSON->decode($r->{content}) };
    if (!$r->{success}) {
        my $msg = $data && ref $data->{value} eq 'HASH'
            ? "$data->{value}{error}: $data->{value}{message}"
            : "$r->{status} $r->{reason} $r->{content}";
        $msg =~ s/\n.*//s;
        croak "TSBrowser: $method $path: $msg";
    }
    return $data ? $data->{value} : undef;
}

sub _s { "/session/$_[0]{session}" }

sub get {
    my ($self, $url) = @_;
    $self->_cmd('POST', $self->_s . '/url', { url => $url });
}

sub url { $_[0]->_cmd('GET', $_[0]->_s . '/url') }

sub set_size {
    my ($self, $w, $h) = @_;
    $self->_cmd('POST', $self->_s . '/window/rect',
                { width => $w, height => $h });
}

# runs JavaScript in the page: arguments as "arguments[N]", the value of
# its "return"
sub script {
    my ($self, $js, @args) = @_;
    return $self->_cmd('POST', $self->_s . '/execute/sync',
                       { script => $js, args => \@args });
}

# the same, asynchronous: the script calls arguments[N] (its last
# argument) with the result
sub script_async {
    my ($self, $js, @args) = @_;
    return $self->_cmd('POST', $self->_s . '/execute/async',
                       { script => $js, args => \@args });
}

sub find {
    my ($self, $css) = @_;
    my $v = $self->_cmd('POST', $self->_s . '/element',
                        { using => 'css selector', value => $css });
    return $v->{$ELEMENT};
}

sub click {
    my ($self, $css) = @_;
    my $id = $self->find($css);
    $self->_cmd('POST', $self->_s . "/element/$id/click", {});
}

sub type {
    my ($self, $css, $text, %o) = @_;
    my $id = $self->find($css);
    $self->_cmd('POST', $self->_s . "/element/$id/clear", {}) if $o{clear};
    $self->_cmd('POST', $self->_s . "/element/$id/value",
                { text => $text });
}

sub text {
    my ($self, $css) = @_;
    my $id = $self->find($css);
    return $self->_cmd('GET', $self->_s . "/element/$id/text");
}

# the browser's log since the last call: [{level, message, timestamp}]
sub logs {
    my ($self) = @_;
    return $self->_cmd('POST', $self->_s . '/se/log', { type => 'browser' })
        // [];
}

sub console_errors {
    my ($self, $ignore) = @_;
    return map { $_->{message} }
           grep { $_->{level} eq 'SEVERE'
                  && !($ignore && $_->{message} =~ $ignore) }
           @{$self->logs};
}

sub screenshot {
    my ($self, $file) = @_;
    my $png = decode_base64($self->_cmd('GET', $self->_s . '/screenshot'));
    open(my $fh, '>:raw', $file) or croak "TSBrowser: $file: $!";
    print $fh $png;
    close $fh or croak "TSBrowser: $file: $!";
    return $file;
}

# calls $cond until it returns true, at most "timeout" seconds
sub wait_until {
    my ($self, $cond, %o) = @_;
    my $deadline = time + ($o{timeout} // 10);
    for (;;) {
        my $r = eval { $cond->() };
        return $r if $r;
        last if time >= $deadline;
        sleep($o{interval} // 0.1);
    }
    Test::More::diag('TSBrowser: timed out waiting for '
                     . ($o{what} // 'condition'));
    return 0;
}

# after a failed test: a screenshot into the test directory (kept then)
sub shot_on_failure {
    my ($self, $name) = @_;
    return if Test::More->builder->is_passing;
    return unless $self->{dir} && $self->{session};
    my $file = "$self->{dir}/" . ($name // 'failure') . '.png';
    if (eval { $self->screenshot($file); 1 }) {
        Test::More::diag("TSBrowser: screenshot of the page: $file");
    } else {
        Test::More::diag("TSBrowser: no screenshot: $@");
    }
}

sub quit {
    my ($self) = @_;
    if ($self->{session}) {
        eval { $self->_cmd('DELETE', $self->_s) };
        delete $self->{session};
    }
    if ($self->{pid}) {
        kill 'TERM', $self->{pid};
        my $deadline = time + 5;
        while (waitpid($self->{pid}, WNOHANG) == 0) {
            if (time > $deadline) {
                kill 'KILL', $self->{pid};
                waitpid($self->{pid}, 0);
                last;
            }
            sleep 0.05;
        }
        delete $self->{pid};
    }
    @LIVE = grep { $_ != $self } @LIVE;
}

END {
    local $?;
    $_->quit for @LIVE;
}

1;
