"""The tests' one wait (tests/waiting.py): returns the awaited value, or fails naming what it awaited."""

from __future__ import annotations

import itertools

import pytest

from waiting import wait_until


def test_returns_the_first_value_that_is_done() -> None:
    counter = itertools.count()
    assert wait_until(lambda: next(counter), "the counter to reach 3", done=lambda n: n >= 3, interval_s=0) == 3


def test_a_passed_deadline_names_what_was_awaited_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"waited 0 s for job j1 to end; last seen: 'running'"):
        wait_until(lambda: "running", "job j1 to end", done=lambda state: state == "done", deadline_s=0.05,
                   interval_s=0.01)
