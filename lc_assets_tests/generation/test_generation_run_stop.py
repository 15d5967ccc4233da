"""run_until_stopped: an interrupt of the calling thread becomes a graceful stop of the run's worker thread."""

from __future__ import annotations

import _thread
import threading

import pytest

from lc_assets.lib.generation.run import run_until_stopped


def _interrupt_soon() -> None:
    threading.Timer(0.2, _thread.interrupt_main).start()  # what a SIGINT / a terminated Dagster run does


def test_interrupt_stops_the_run_which_finishes_then_the_interrupt_is_raised():
    finished = threading.Event()

    def run(stop: threading.Event) -> str:
        assert stop.wait(30), "the interrupt never reached the run"
        finished.set()  # the run's commit and merge happen here
        return "done"

    _interrupt_soon()
    with pytest.raises(KeyboardInterrupt):
        run_until_stopped(run, threading.Event(), grace_s=5.0)
    assert finished.is_set()


def test_a_stopped_run_that_fails_raises_its_own_error_not_the_interrupt():
    def run(stop: threading.Event) -> str:
        assert stop.wait(30)
        raise OSError("catalog lineage.duckdb is held by another process")  # e.g. the merge after the stop

    _interrupt_soon()
    with pytest.raises(OSError, match="held by another process") as info:
        run_until_stopped(run, threading.Event(), grace_s=5.0)
    assert isinstance(info.value.__cause__, KeyboardInterrupt)


def test_without_interrupt_the_result_or_error_comes_back():
    assert run_until_stopped(lambda stop: 42, threading.Event(), grace_s=1.0) == 42
    with pytest.raises(ValueError, match="bad"):
        run_until_stopped(lambda stop: (_ for _ in ()).throw(ValueError("bad")), threading.Event(), grace_s=1.0)
