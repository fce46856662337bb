package TSRollout;

# Helpers for rollout tests: read a rollout, and send traffic while
# waiting for a rollout to reach a state (a rollout moves only with
# responses of its pool, so waiting means sending requests).

use strict;
use warnings;

use POSIX ();
use Time::HiRes qw(time sleep);

# GET /upstreams/NAME/rollout: the document (undef if none)
sub get {
    my ($t, $ups, %o) = @_;
    my $r = $t->get("$o{api}/upstreams/$ups/rollout", port => $o{port},
                    quiet => 1);
    return $r->{status} == 200 ? $r->{json} : undef;
}

# Sends requests to PATH (port "main") until COND(doc) holds, reading the
# rollout every POLL requests; returns the document, or undef after
# TIMEOUT seconds.  ON_REQUEST, if given, sees each response.
sub drive {
    my ($t, $ups, %o) = @_;
    my $timeout = $o{timeout} // 20;
    my $poll = $o{poll} // 5;
    my $path = $o{path} // '/';
    my $deadline = time + $timeout;
    my $n = 0;
    for (;;) {
        if ($n++ % $poll == 0) {
            my $doc = get($t, $ups, %o);
            return $doc if $doc && $o{until}->($doc);
            last if time >= $deadline;
        }
        my $r = $t->get($path, quiet => 1, %{$o{request} // {}});
        $o{on_request}->($r) if $o{on_request};
        sleep($o{pause}) if $o{pause};
    }
    Test::More::diag("TSRollout: timed out after ${timeout}s waiting for "
        . ($o{what} // 'the rollout'));
    my $doc = get($t, $ups, %o);
    Test::More::diag('TSRollout: last document: '
        . ($doc ? JSON::PP->new->canonical->encode($doc) : 'none'));
    return undef;
}

# Sends requests to PATH (port "main") from a child process until
# stop_traffic(PID): for a rollout that another process waits for (the
# CLI's --wait).  Returns the child's pid.
sub traffic {
    my ($t, %o) = @_;
    my $path = $o{path} // '/';
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        $SIG{TERM} = sub { POSIX::_exit(0) };
        for (;;) {
            eval { $t->get($path, quiet => 1) };
            sleep($o{pause} // 0.005);
        }
    }
    return $pid;
}

sub stop_traffic {
    my ($pid) = @_;
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

1;
