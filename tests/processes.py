"""For tests that start eqsdk in a subprocess and interrupt it."""
import signal


def interruptible() -> None:
    """Popen's preexec_fn: SIGINT back to its default in the child, so that Python turns it into
    KeyboardInterrupt even when the test run was started with SIGINT ignored (a shell's
    background job), as a terminal's Ctrl-C would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
