"""The one way tests wait: poll a state with a deadline, and say what was awaited when it passes.

The deadline is generous (a loaded 2-core machine runs a tiny training in minutes, not seconds) and
stays below pytest-timeout's hang guard (pyproject.toml), so a stuck wait fails with its own message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: Seconds any wait may take before the test fails; pytest-timeout's guard is 1800 s.
DEADLINE_S = 900.0


def wait_until(observe: Callable[[], T], what: str, *, done: Callable[[T], object] = bool,
               deadline_s: float = DEADLINE_S, interval_s: float = 0.1) -> T:
    """Call `observe()` every `interval_s` seconds until `done(value)` is true (default: the value is
    true) and return that value. After `deadline_s` seconds an AssertionError names `what` and the last
    value seen. An assertion inside `observe` fails the wait at once."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = observe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {deadline_s:.0f} s for {what}; last seen: {value!r:.500}")
        time.sleep(interval_s)
