"""Graceful stops: SIGTERM or SIGINT ends a run at the next safe point, resumably.

Cluster schedulers (SLURM, Kubernetes) preempt a job with SIGTERM and kill it a grace period
later. Inside `graceful_stop()` the first SIGTERM or SIGINT only records the request; the stages
look at it where stopping loses nothing:

- training, after each optimizer step: a resumable state is saved at that step first;
- sampling and evaluation, after each question's records are appended;
- the driver, between stages.

They raise `Preempted`; the CLI exits with status 75 (EX_TEMPFAIL: "try again"), and the same
command continues from there. A second signal stops at once (KeyboardInterrupt), as before.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

EXIT_STATUS = 75
"""The exit status of a command stopped by a signal at a safe point (sysexits' EX_TEMPFAIL)."""

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_requested: int | None = None
_listeners: list[Callable[[int], None]] = []


class Preempted(Exception):
    """A stop asked for by a signal, raised at a safe point; rerun to continue."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum = signum
        self.where = where
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}")


def requested() -> int | None:
    """The signal that asked for a stop, or None."""
    return _requested


def request(signum: int = signal.SIGTERM) -> None:
    """Ask for a stop as the signal handler does (for callers that learn of it another way)."""
    global _requested
    _requested = signum


def check(where: str) -> None:
    """Raise `Preempted` when a stop was asked for; `where` says what was finished."""
    if _requested is not None:
        raise Preempted(_requested, where)


def _handler(signum: int, frame: FrameType | None) -> None:
    global _requested
    if _requested is not None:
        raise KeyboardInterrupt  # a second signal: stop now
    _requested = signum
    for listener in list(_listeners):
        listener(signum)
    log.warning(
        "%s received (pid %d): stopping at the next safe point; a second signal stops at once",
        signal.Signals(signum).name,
        os.getpid(),
    )


@contextmanager
def passing_on(listener: Callable[[int], None]) -> Iterator[None]:
    """Call `listener(signum)` when a stop is asked for during the block (e.g. to pass the
    signal on to a child process the driver waits for)."""
    _listeners.append(listener)
    try:
        if _requested is not None:
            listener(_requested)
        yield
    finally:
        _listeners.remove(listener)


@contextmanager
def graceful_stop() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into a stop request for the duration of the block.

    Only the main thread can install signal handlers; elsewhere this does nothing. Nested
    blocks keep the outer handlers. The request is cleared when the outermost block exits.
    """
    global _requested
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is _handler:
        yield  # already inside a graceful_stop block
        return
    previous: dict[int, Any] = {s: signal.signal(s, _handler) for s in SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _requested = None
