"""Equivalence of LaTeX answers through Math-Verify, under a wall-clock limit that works anywhere.

Math-Verify bounds its own work with `signal.alarm`, which only works in the main thread; the
samplers and evaluators that score answers may run in other threads. So Math-Verify runs with its
time limits off, in a child process (`irpo.tasks.math_worker`) that is killed and restarted when a
request runs past `timeout` seconds (the request then counts as "not equivalent"). Requests from
several threads are serialised. With `timeout=None` Math-Verify runs in the calling thread with
no limit (for debugging).

Model output is only parsed by Math-Verify's LaTeX / expression parsers, never evaluated as code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from irpo.errors import IrpoError

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT = 120.0

_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|mathrm|mbox|textit)\s*\{([^{}]*)\}")
_WORD = re.compile(r"[A-Za-z]{3,}")
_LATEX_COMMAND = re.compile(r"\\(?:begin|end)\s*\{[^{}]*\}|\\[A-Za-z]+")
_OPERATOR_SPACES = re.compile(r"\s*([+=]|(?<!\\)-)\s*")
_BARE_FRAC = re.compile(r"\\([dt]?frac)\s*(\\[A-Za-z]+|[0-9A-Za-z])\s*(\\[A-Za-z]+|[0-9A-Za-z])")
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:,\\!|\{,\})(?=\d{3})")
_SPACING = re.compile(r"\\[,;:! ]|\\left|\\right|(?<!\d)\s+|\s+(?!\d)")


def canonical(answer: str) -> str:
    """Light normalisation for the exact-match fast path (never used to declare a mismatch)."""
    s = _TEXT_COMMAND.sub(r"\1", answer)
    s = _SPACING.sub("", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "").replace("$", "")
    return s.rstrip(".")


def for_math_verify(answer: str) -> str:
    """What to give Math-Verify's parser: `\\boxed{answer}`, or the plain text for a number
    with words.

    A span with a number and English words ("2 vertical asymptotes") read as LaTeX is a product
    of letters; as text, Math-Verify finds its number. Words alone ("LQSX", "Devon") stay boxed
    so both sides parse to the same symbols. First, what Math-Verify misreads is removed: LaTeX
    thousands separators ("5,\\!525", "10{,}000"), a final period or comma, spaces around
    "+", "-" and "=" (it reads "a + b + c" as "a +"), and brace-less fractions get their braces
    ("\\frac \\pi4" -> "\\frac{\\pi}{4}").
    """
    answer = _LATEX_THOUSANDS.sub("", answer.strip()).rstrip(".,").strip()
    answer = _OPERATOR_SPACES.sub(r"\1", _BARE_FRAC.sub(r"\\\1{\2}{\3}", answer))
    prose = _LATEX_COMMAND.sub(" ", _TEXT_COMMAND.sub(" ", answer))
    if _WORD.search(prose) and re.search(r"\d", prose):
        return answer
    return f"\\boxed{{{answer}}}"


class MathJudge:
    """Asks Math-Verify whether two answers are equal, each request bounded by `timeout` seconds."""

    def __init__(self, timeout: float | None = 5.0) -> None:
        self.timeout = timeout
        self.timeouts = 0
        """How many requests ran out of time (each counted as not equivalent / not parsed)."""
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str | None] = queue.Queue()

    # ------------------------------------------------------------------ public

    def equivalent(self, gold: str, prediction: str) -> bool:
        """Math-Verify's verdict on `prediction` against `gold` (both strings it can parse)."""
        return self._ask({"op": "verify", "gold": gold, "pred": prediction})

    def same_answer(self, gold: str, prediction: str, *, fast_path: bool = True) -> bool:
        """Whether `prediction` states the `gold` answer: equal after `canonical`, else Math-Verify
        on `for_math_verify` of both."""
        if fast_path and canonical(gold) == canonical(prediction):
            return True
        return self.equivalent(for_math_verify(gold), for_math_verify(prediction))

    def parses(self, text: str) -> bool:
        """True when Math-Verify turns `text` into a SymPy object."""
        return self._ask({"op": "parse", "text": text})

    def close(self) -> None:
        """Stop the worker process (a later request starts a new one)."""
        with self._lock:
            self._stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown there is nothing to clean
            self._stop()

    # ------------------------------------------------------------------ worker

    def _ask(self, request: dict[str, Any]) -> bool:
        if self.timeout is None:
            from irpo.tasks.math_worker import handle

            logging.getLogger("math_verify").setLevel(logging.ERROR)
            try:
                return handle(request)
            except Exception:
                return False
        with self._lock:
            process = self._ensure_started()
            assert process.stdin is not None
            try:
                process.stdin.write(json.dumps(request) + "\n")
                process.stdin.flush()
                line = self._replies.get(timeout=self.timeout)
            except queue.Empty:
                self.timeouts += 1
                log.warning(
                    "Math-Verify took over %.1fs on %.200r; counted as not equal",
                    self.timeout,
                    request,
                )
                self._stop()
                return False
            except OSError:  # the worker died (killed from outside, out of memory)
                self._stop()
                return False
            if line is None:
                self._stop()
                return False
            return bool(json.loads(line).get("ok"))

    def _ensure_started(self) -> subprocess.Popen[str]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop()
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-m", "irpo.tasks.math_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self._replies = queue.Queue()
        assert process.stdout is not None
        threading.Thread(target=_pump, args=(process.stdout, self._replies), daemon=True).start()
        try:
            ready = self._replies.get(timeout=_STARTUP_TIMEOUT)
        except queue.Empty:
            ready = None
        if ready is None or not json.loads(ready).get("ready"):
            process.kill()
            raise IrpoError(
                "could not start the Math-Verify worker (python -m irpo.tasks.math_worker); "
                "is math-verify installed?"
            )
        self._process = process
        return process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdin is not None:
            process.stdin.close()
        # stdout is closed by its reader thread when it reaches the end of the stream


def _pump(stream: IO[str], replies: queue.Queue[str | None]) -> None:
    """Move the worker's reply lines into `replies`; None marks its end."""
    try:
        for line in stream:
            replies.put(line)
    except (OSError, ValueError):  # the process was killed mid-line
        pass
    finally:
        stream.close()
        replies.put(None)
