"""Overlapping pauses of the garbage collector: the last release resumes it."""

import gc

from dynamod import collector


def test_overlapping_holds_resume_once_all_are_released():
    assert gc.isenabled()
    collector.hold()
    with collector.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()  # the first hold is still on
    collector.release()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled():
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
