"""Equivalence of LaTeX answers through Math-Verify, under a wall-clock limit that works anywhere.

Math-Verify bounds its own work with `signal.alarm`, which only works in the main thread; the
samplers and evaluators that score answers may run in other threads. So Math-Verify runs with its
time limits off, in a child process (`irpo.tasks.math_worker`) that is killed and restarted when a
request runs past `timeout` seconds (the request then counts as "not equivalent"). Requests from
several threads are serialised. With `timeout=None` Math-Verify runs in the calling thread with
no limit (for debugging).

Before Math-Verify, `MathJudge.same_answer` guards against its known false equalities
(`MATH_VERIFY_FALSE_EQUALITIES` lists the ones that reached irpo, each guarded and tested): answers with several parts ("4, 15, and 27",
`\\boxed{-3} \\text{ and } \\boxed{2}`) are compared part by part, as a set, instead of letting
Math-Verify read a span with words as text and compare its last numbers; sequences with an
ellipsis are compared element by element, in order, or not at all; and in the worker, two exact
numbers (rationals, powers, factorials: `\\frac{1}{3^{40}}`, `1/500!`) are compared exactly before
Math-Verify's numeric tolerance could call them equal. A labelled answer (`|PQ| = 5`,
`S_{ABC}:S = 3:8`) is compared by its value when the other side has no label.

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
_PART_THOUSANDS = re.compile(r"(?<=\d),\\!\s*(?=\d{3})|(?<=\d)\{,\}(?=\d{3})")
_PLAIN_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(?:,\d{3})+(?![\d,.])")
_JOINING_TEXT = re.compile(
    r"\\(?:text|textrm|mbox|mathrm)\s*\{\s*(?:,\s*)?(?:and|or)?\s*,?\s*\}|\\q?quad\b", re.IGNORECASE
)
_JOINING_WORD = re.compile(r"(?:^|(?<=[\s,$}]))(?:and|or)(?=[\s$\\]|$)", re.IGNORECASE)
_SET_BRACES = re.compile(r"^(?:\\left\s*)?\\\{(.*)(?:\\right\s*)?\\\}$", re.DOTALL)
_ELLIPSIS = re.compile(r"\\[lc]?dots\b|\\ldotp|\.\.\.|…|\\cdot\s*\\cdot\s*\\cdot")
_NAME = r"(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?[A-Za-z0-9]+\}?)?(?:'|\^\{?\\prime\}?)*(?:\([^()=]*\))?"
_LABEL = re.compile(rf"^\s*(?:{_NAME}|\|[^|=]+\|)(?:\s*:\s*(?:{_NAME}|\|[^|=]+\|))*\s*$")
_CACHE_SIZE = 100_000

MATH_VERIFY_FALSE_EQUALITIES: tuple[tuple[str, str, str], ...] = (
    ("\\frac{1}{2004!}", "\\frac{1}{2006!}", "huggingface/Math-Verify#14: tiny values"),
    ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", "huggingface/Math-Verify#14: tiny values"),
    ("\\frac{1}{3^{40}}", "\\frac{1}{3^{41}}", "tiny values"),
    ("\\frac{1}{500!}", "1/498!", "tiny values"),
    ("10^{-20}", "10^{-21}", "tiny values"),
    ("0.0000001", "0.0000002", "tiny decimals"),
    (
        "\\frac{2^{2005}+1}{3 \\cdot 2^{2006}}",
        "\\frac{1}{3 \\cdot 2^{2006}}",
        "huggingface/Math-Verify#14: a difference below the tolerance",
    ),
    ("4, 15, and 27", "5, 12, and 27", "a list with words read as text: last numbers only"),
    ("19, 46, \\text{ and } 82", "21, 36, and 82", "huggingface/Math-Verify#14: list with words"),
    ("1, 2, \\ldots, n", "1, 3, 5, \\ldots, 2n-1", "huggingface/Math-Verify#14: ellipsis"),
    ("1, 2, \\ldots, k", "1, 3, 5, \\ldots, 2k-1", "ellipsis sequences"),
)
"""(gold, prediction, where it was reported): Math-Verify 0.9 `verify` calls each pair equal,
irpo's guards do not (tests/test_tasks_formats.py)."""


def answer_parts(answer: str) -> list[str]:
    """The parts of an answer with several: "4, 15, and 27" -> ["4", "15", "27"],
    "-3 \\text{ or } 2" -> ["-3", "2"], "\\{1, 2\\}" -> ["1", "2"]; one part otherwise.

    Splits at commas, semicolons and the words "and" / "or" outside brackets; a tuple "(1,4)",
    an interval "[2,5)" and thousands ("10,\\!080", "58,500") stay whole.
    """
    s = _PART_THOUSANDS.sub("", answer.strip().strip("$").strip())
    s = _PLAIN_THOUSANDS.sub(lambda m: m.group().replace(",", ""), s)
    s = _JOINING_TEXT.sub(",", s)
    inner = _SET_BRACES.match(s.strip())
    if inner is not None and _top_level_commas(inner.group(1)):
        s = inner.group(1)
    parts, depth, start = [], 0, 0
    i = 0
    while i < len(s):
        char = s[i]
        if char == "\\":
            i += 2  # an escaped character ("\\{", "\\,") opens and closes nothing
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char in ",;" and depth == 0:
            parts.append(s[start:i])
            start = i + 1
        elif depth == 0 and (word := _JOINING_WORD.match(s, i)) is not None:
            parts.append(s[start:i])
            start = word.end()
            i = word.end()
            continue
        i += 1
    parts.append(s[start:])
    cleaned = [part.strip().strip("$").strip() for part in parts]
    return [part for part in cleaned if part] or [answer.strip()]


def _top_level_commas(s: str) -> bool:
    depth = 0
    for char in s:
        depth += {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            return True
    return False


def has_words(answer: str) -> bool:
    """True when an answer has English words outside LaTeX commands and `\\text{}` ("10 vertical
    asymptotes", "the sum of the roots"); False for "\\text{Devon}", "x^2+1", "LQ"."""
    return bool(_WORD.search(_LATEX_COMMAND.sub(" ", _TEXT_COMMAND.sub(" ", answer))))


def _value_of_label(answer: str) -> str | None:
    """The value of a labelled answer ("|PQ| = 5" -> "5", "S_{ABC}:S = 3:8" -> "3:8"), or None."""
    if answer.count("=") != 1 or re.search(r"[<>!\\]=|=[<>]", answer):
        return None
    label, value = answer.split("=")
    return value.strip() if _LABEL.match(label) and value.strip() else None


def _is_ellipsis(part: str) -> bool:
    return not _ELLIPSIS.sub("", part).strip(" ,")


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
        self._cache: dict[tuple[str, str, bool], bool] = {}

    # ------------------------------------------------------------------ public

    def equivalent(self, gold: str, prediction: str) -> bool:
        """Math-Verify's verdict on `prediction` against `gold` (both strings it can parse)."""
        return self._ask({"op": "verify", "gold": gold, "pred": prediction})

    def same_answer(self, gold: str, prediction: str, *, fast_path: bool = True) -> bool:
        """Whether `prediction` states the `gold` answer (the guards in the module docstring, then
        Math-Verify on `for_math_verify` of both). With `fast_path` (default), strings equal
        after `canonical` are equal at once. Verdicts are cached."""
        key = (gold, prediction, fast_path)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._same_answer(gold, prediction, fast_path)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def _same_answer(self, gold: str, prediction: str, fast_path: bool) -> bool:
        if fast_path and canonical(gold) == canonical(prediction):
            return True
        if _ELLIPSIS.search(gold) or _ELLIPSIS.search(prediction):
            return self._same_sequence(gold, prediction, fast_path)
        gold_parts, parts = answer_parts(gold), answer_parts(prediction)
        if len(gold_parts) == 1 and len(parts) == 1:
            return self._same_part(gold, prediction, fast_path)
        if len(gold_parts) == len(parts):
            return self._same_set(gold_parts, parts, fast_path)
        if has_words(gold) or has_words(prediction):
            return False  # Math-Verify would read the span with words as text
        return self._same_part(gold, prediction, fast_path)  # "\\{1\\pm\\sqrt5\\}" vs a list

    def _same_part(self, gold: str, prediction: str, fast_path: bool) -> bool:
        if fast_path and canonical(gold) == canonical(prediction):
            return True
        if "=" not in prediction and (value := _value_of_label(gold)) is not None:
            gold = value
        elif "=" not in gold and (value := _value_of_label(prediction)) is not None:
            prediction = value
        if fast_path and canonical(gold) == canonical(prediction):
            return True
        return self.equivalent(for_math_verify(gold), for_math_verify(prediction))

    def _same_set(self, gold_parts: list[str], parts: list[str], fast_path: bool) -> bool:
        """Every gold part matched by its own predicted part, in any order."""
        if len(parts) > 12:  # a long list is compared in order
            return all(
                self._same_part(g, p, fast_path) for g, p in zip(gold_parts, parts, strict=True)
            )
        unmatched = list(range(len(parts)))
        # the written order first: most answers list their parts in the gold's order
        for i, g in enumerate(gold_parts):
            order = sorted(unmatched, key=lambda j: j != i)
            match = next((j for j in order if self._same_part(g, parts[j], fast_path)), None)
            if match is None:
                return False
            unmatched.remove(match)
        return True

    def _same_sequence(self, gold: str, prediction: str, fast_path: bool) -> bool:
        """Sequences with an ellipsis: the same length, ellipses at the same places and equal
        terms in order; anything else is not called equal."""
        gold_parts, parts = answer_parts(gold), answer_parts(prediction)
        if len(gold_parts) != len(parts) or len(parts) < 2:
            return False
        for g, p in zip(gold_parts, parts, strict=True):
            if _is_ellipsis(g) or _is_ellipsis(p):
                if not (_is_ellipsis(g) and _is_ellipsis(p)):
                    return False
            elif _ELLIPSIS.search(g) or _ELLIPSIS.search(p):
                if canonical(g) != canonical(p):
                    return False
            elif not self._same_part(g, p, fast_path):
                return False
        return True

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
