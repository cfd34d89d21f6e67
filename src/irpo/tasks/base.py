"""The task interface: load problems, render the paper's prompt, score a completion.

Tasks are pure code: no model, no training. A wrong verdict here becomes a wrong *rejected*
label in training, so every task's extraction is table-tested against real-looking outputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from irpo.records import Problem, Verdict


class Task(ABC):
    """A task with checkable final answers.

    Subclasses set `name` and `has_gold_solution`, and implement `load`, `prompt` and `score`.
    """

    name: str = ""
    has_gold_solution: bool = False
    """True when problems carry gold reasoning that can serve as a winner (GSM8K, MATH, arith)."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    @abstractmethod
    def load(
        self,
        source: str | None,
        split: str,
        *,
        limit: int | None = None,
        skip_bad_rows: bool = False,
    ) -> list[Problem]:
        """Problems of `split` from `source`: a local JSONL/JSON/Parquet file or a Hub dataset id."""

    @abstractmethod
    def prompt(self, problem: Problem) -> str:
        """The paper's prompt for this problem (before any chat template)."""

    @abstractmethod
    def score(self, completion: str, problem: Problem) -> Verdict:
        """Extract and normalise the final answer of `completion`; compare it with the gold one.

        Never raises on any input string; model output is never evaluated as code.
        """

    def gold_completion(self, problem: Problem) -> str | None:
        """The gold solution written the way the model is asked to answer, or None.

        It ends with "Final answer: <gold answer>" so that it scores as correct.
        """
        return None
