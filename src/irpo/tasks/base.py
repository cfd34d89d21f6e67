"""The task interface: load problems, render the paper's prompt, score a completion.

Tasks are pure code: no model, no training. A wrong verdict here becomes a wrong *rejected*
label in training, so every task's extraction is table-tested against real-looking outputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from irpo.errors import IrpoError
from irpo.records import Problem, Verdict
from irpo.tasks.answers import ANSWER_MODES, DEFAULT_MODE, AnswerMode, check_mode


@dataclass
class LoadStats:
    """What one load read: rows seen, problems kept, bad rows skipped (and why).

    `skipped_reasons` keeps the first few messages ("train.jsonl:12: no 'answer' field").
    """

    source: str
    rows: int = 0
    loaded: int = 0
    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)


class Task(ABC):
    """A task with checkable final answers.

    Subclasses set `name` and `has_gold_solution`, and implement `load_with_stats`, `prompt` and
    `score_as` (the verdict under a given answer mode) or, for a task without modes, `score`.

    Every task takes the option `answer_mode`: `flexible` (default) or `strict`
    (`irpo.tasks.answers`). `score` uses it, so sampling (the training labels), pairing and
    evaluation all follow it; evaluation also reports the other mode through `score_as`.
    """

    name: str = ""
    has_gold_solution: bool = False
    """True when problems carry gold reasoning that can serve as a winner (GSM8K, MATH, arith)."""
    answer_mode: AnswerMode = DEFAULT_MODE

    def __init__(self, *, answer_mode: str = DEFAULT_MODE, **options: Any) -> None:
        """Subclasses take their options as keywords and pass the rest here: leftovers are unknown."""
        if options:
            raise IrpoError(f"task {self.name}: unknown option(s) {', '.join(sorted(options))}")
        try:
            self.answer_mode = check_mode(answer_mode)
        except ValueError as e:
            raise IrpoError(f"task {self.name}: {e}") from None

    @abstractmethod
    def load_with_stats(
        self,
        source: str | None,
        split: str,
        *,
        limit: int | None = None,
        skip_bad_rows: bool = False,
    ) -> tuple[list[Problem], LoadStats]:
        """Problems of `split` from `source` (a local JSONL/JSON/Parquet file or a Hub dataset
        id), with the counts of rows read, kept and skipped."""

    def load(
        self,
        source: str | None,
        split: str,
        *,
        limit: int | None = None,
        skip_bad_rows: bool = False,
    ) -> list[Problem]:
        """Problems of `split` from `source`; `load_with_stats` also says what was skipped."""
        problems, _ = self.load_with_stats(source, split, limit=limit, skip_bad_rows=skip_bad_rows)
        return problems

    @abstractmethod
    def prompt(self, problem: Problem) -> str:
        """The paper's prompt for this problem (before any chat template)."""

    def score(self, completion: str, problem: Problem) -> Verdict:
        """Extract and normalise the final answer of `completion`; compare it with the gold one,
        under the task's `answer_mode`.

        Never raises on any input string; model output is never evaluated as code.
        """
        return self.score_as(completion, problem, self.answer_mode)

    def score_as(self, completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
        """`score` under answer mode `mode` (`strict` or `flexible`).

        A task that overrides only `score` has no modes: it scores the same under both.
        """
        if type(self).score is not Task.score:
            return self.score(completion, problem)
        raise NotImplementedError(f"task {self.name}: implement score_as (or score)")

    def score_modes(self, completion: str, problem: Problem) -> dict[str, Verdict]:
        """The verdict under each answer mode, {"strict": ..., "flexible": ...}."""
        return {mode: self.score_as(completion, problem, mode) for mode in ANSWER_MODES}  # type: ignore[arg-type]

    def same_answer(self, first: str, other: str) -> bool:
        """Whether two normalised answers (`Verdict.answer`) state the same answer: how majority
        votes are grouped. Equal strings by default; MATH asks Math-Verify."""
        return first == other

    def gold_completion(self, problem: Problem) -> str | None:
        """The gold solution written the way the model is asked to answer, or None.

        It ends with "Final answer: <gold answer>" so that it scores as correct.
        """
        return None

    def audit_gold(self, problem: Problem) -> list[str]:
        """Reasons why this problem's gold data cannot be trusted (empty when it can).

        The base check: the gold completion, when the task has one, scores as correct. Tasks add
        their own checks (the gold answer normalises, an answer key names an option, ...).
        """
        completion = self.gold_completion(problem)
        if completion is None:
            return []
        verdict = self.score(completion, problem)
        if not verdict.correct:
            return [f"gold completion scores as wrong (extracted {verdict.answer!r})"]
        return []
