package TSCli;

# Helpers for the tests of the operator tools: run scripts/traffic-shift
# and capture its exit code, standard output and standard error; turn a
# file of conf-examples/ into a TSTest template.  Core Perl only.

use strict;
use warnings;

use Exporter qw(import);
use File::Spec;
use POSIX ();
use Time::HiRes qw(time);

our @EXPORT_OK = qw(cli run_capture example_template unsupported
                    missing_features $ROOT $CLI);

our $ROOT = do {
    my $dir = File::Spec->rel2abs(__FILE__);
    $dir =~ s{/[^/]+/[^/]+/[^/]+$}{};       # strip t/lib/TSCli.pm
    $dir;
};

our $CLI = "$ROOT/scripts/traffic-shift";

my $SEQ = 0;

# run_capture({ env => {...}, dir => DIR, stdin => TEXT }, COMMAND, ARGS)
#
# Runs a command with stdout and stderr in files of DIR; returns
# { rc, out, err, secs }.  rc is the exit code, or 128 + signal.
sub run_capture {
    my ($opts, @cmd) = @_;
    my $dir = $opts->{dir} // File::Spec->tmpdir;
    my $n = $$ . '-' . ++$SEQ;
    my ($out, $err) = ("$dir/run-$n.out", "$dir/run-$n.err");
    my $start = time;

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(PIPE INT TERM HUP);
        if (defined $opts->{stdin}) {
            open(my $fh, '>', "$dir/run-$n.in") or POSIX::_exit(126);
            print $fh $opts->{stdin};
            close $fh;
            open(STDIN, '<', "$dir/run-$n.in") or POSIX::_exit(126);
        } else {
            open(STDIN, '<', '/dev/null');
        }
        open(STDOUT, '>', $out) or POSIX::_exit(126);
        open(STDERR, '>', $err) or POSIX::_exit(126);
        while (my ($k, $v) = each %{$opts->{env} // {}}) {
            if (defined $v) { $ENV{$k} = $v } else { delete $ENV{$k} }
        }
        no warnings 'exec';
        exec { $cmd[0] } @cmd;
        print STDERR "exec $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    my $status = $?;
    my $rc = $status & 127 ? 128 + ($status & 127) : $status >> 8;

    my %r = (rc => $rc, secs => time - $start);
    for ([out => $out], [err => $err]) {
        my ($k, $f) = @$_;
        open(my $fh, '<', $f) or die "$f: $!";
        local $/;
        $r{$k} = <$fh> // '';
        close $fh;
        unlink $f;
    }
    unlink "$dir/run-$n.in";
    return \%r;
}

# cli($t, [API_URL,] ARGS...): runs scripts/traffic-shift with
# TRAFFIC_SHIFT_API set to the given URL (default: the instance's port
# "api", location /traffic/) and TRAFFIC_SHIFT_USER unset.  An API URL is
# recognised as a first argument starting with "http".
sub cli {
    my ($t, @args) = @_;
    my $api = @args && $args[0] =~ m{^https?://} ? shift @args
        : 'http://127.0.0.1:' . $t->port('api') . '/traffic/';
    my %env = (TRAFFIC_SHIFT_API => $api, TRAFFIC_SHIFT_USER => undef);
    if (@args && ref $args[0] eq 'HASH') {
        my $extra = shift @args;
        %env = (%env, %$extra);
    }
    my $r = run_capture({ dir => $t->testdir, env => \%env }, $CLI, @args);
    Test::More::note("traffic-shift @args: exit $r->{rc}"
        . ($r->{err} ne '' ? "\n$r->{err}" : ''))
        if $ENV{TS_VERBOSE};
    return $r;
}

# example_template(FILE): the text of conf-examples/FILE as a TSTest
# template.  The paths of a Debian installation become paths in the test
# directory, every port number N becomes %%PORT_pN%% (so "listen 80" is
# port "p80" and "server 127.0.0.1:8001" port "p8001"), and the main
# context directives the harness sets (user, worker_processes, pid,
# error_log) become comments, keeping the line numbers of the file.
sub example_template {
    my ($file) = @_;
    my $path = "$ROOT/conf-examples/$file";
    open(my $fh, '<', $path) or die "$path: $!";
    my $text = do { local $/; <$fh> };
    close $fh;

    # only the comments may mention a literal "%%"
    $text =~ s{%%}{%}g;

    $text =~ s{^load_module\s+\S*/ngx_http_traffic_shift_module\.so;}
              {%%LOAD_MODULE%%}m
        or die "$file: no load_module line for the module";

    $text =~ s{^(user|worker_processes|pid|error_log)\b[^\n]*}
              {# ($1: set by the test)}mg;

    $text =~ s{(?:/var/log/nginx|/var/lib/nginx|/etc/nginx|/run)/}
              {%%TESTDIR%%/}g;

    $text =~ s{(\blisten\s+)(?:127\.0\.0\.1:)?(\d+)\b}
              {${1}127.0.0.1:%%PORT_p$2%%}g;
    $text =~ s{\b127\.0\.0\.1:(\d+)\b}{127.0.0.1:%%PORT_p$1%%}g;
    $text =~ s{\bport=(\d+)\b}{port=%%PORT_p$1%%}g;

    return $text;
}

# unsupported(NGINX_OUTPUT): the directive an nginx -t output says this
# build does not support yet ("is not supported yet"), or undef
sub unsupported {
    my ($out) = @_;
    return $out =~ /"(\w+)" directive is not supported yet/ ? $1 : undef;
}

# missing_features($t): { directive => 1 } for the directives of the
# admin API, the state file and health checks that this build does not
# support yet ("is not supported yet"), found with "nginx -t" on the
# smallest configuration using each.
sub missing_features {
    my ($t) = @_;
    my %use = (
        traffic_shift_api => ['', '', 'location /a/ { traffic_shift_api; }'],
        health_check => ['', 'health_check;', ''],
        traffic_shift_state =>
            ['traffic_shift_state %%TESTDIR%%/probe-state.json;', '', ''],
    );
    my %missing;
    for my $d (sort keys %use) {
        my ($http, $ups, $loc) = @{$use{$d}};
        my ($rc, $out) = $t->nginx_t(
            "http {\n    $http\n"
            . "    upstream u { server 127.0.0.1:1; $ups }\n"
            . "    server { listen 127.0.0.1:%%PORT_main%%; $loc }\n}\n");
        $missing{$d} = 1 if unsupported($out);
    }
    return \%missing;
}

1;
