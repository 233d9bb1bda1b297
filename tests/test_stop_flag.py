"""The stop request ``meshdex serve`` and ``meshdex watch`` make from their SIGTERM handler.

A handler runs in the main thread between two bytecodes. A ``threading.Event`` deadlocked
when the signal landed while the main thread was inside ``Event.wait`` holding the event's
lock (its ``set()`` waited for that lock for ever: ``serve`` ignored SIGTERM). The test makes
the signal land at each function call ``wait`` makes, one trial per call, in a subprocess
that must finish: with an Event, one of them hangs it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

TRIALS = textwrap.dedent("""
    import os, signal, sys
    from {module} import {name} as Stop

    def trial(nth):
        stop = Stop()
        signal.signal(signal.SIGALRM, lambda *_: stop.set())
        calls = 0

        def hook(frame, event, arg):
            nonlocal calls
            if event in ("call", "c_call"):
                calls += 1
                if calls == nth:
                    sys.setprofile(None)  # one signal, landing in the nth call
                    os.kill(os.getpid(), signal.SIGALRM)

        sys.setprofile(hook)
        stop.wait(0.01)
        sys.setprofile(None)
        return calls

    total = trial(0)  # the calls wait makes, none interrupted
    for nth in range(1, total + 1):
        trial(nth)
    print(total)
""")


def _run_trials(module: str, name: str, *, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", TRIALS.format(module=module, name=name)],
                          capture_output=True, text=True, timeout=timeout_s)


def test_a_stop_requested_by_a_signal_anywhere_in_wait_never_blocks():
    result = _run_trials("meshdex.node.stop_flag", "StopFlag", timeout_s=30)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 1


def test_the_trials_do_catch_an_event_that_deadlocks():
    """The same trials against ``threading.Event``: one hangs (why StopFlag exists)."""
    with pytest.raises(subprocess.TimeoutExpired):
        _run_trials("threading", "Event", timeout_s=5)  # a trial takes ms
