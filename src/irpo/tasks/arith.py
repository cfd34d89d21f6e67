"""`arith`: procedurally generated multi-step arithmetic word problems (the embedded default task).

A problem is a start number and a few operations, written in a short, regular format that a
~1M-parameter character-level model trained from scratch can learn on a CPU:

    question: "Start with 5. Add 3. Subtract 1. What is the result?"
    solution: "5+3=8. 8-1=7. Final answer: 7"

Deliberate departures from the paper (which uses GSM8K, ARC and MATH):
- The prompt is "Question: {question}\\nSolution: " and not the paper's long zero-shot
  instruction: with a character-level tokenizer every character is a token, and a model trained
  from scratch needs no instruction to learn one fixed format.
- The data is generated, so the size of each split is an option and there is no download.

Splits are disjoint by construction: a problem belongs to the split chosen by a hash of its
question text (about 80 % train, 10 % validation, 10 % test), whatever the seed, so no test
problem can ever be generated for training. Generation is deterministic for (seed, split, options).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from irpo.errors import IrpoError
from irpo.records import Problem, Verdict
from irpo.tasks.answers import AnswerMode, format_number, locate_number
from irpo.tasks.base import LoadStats, Task

_OPERATION_WORDS = {"+": "Add {n}.", "-": "Subtract {n}.", "*": "Multiply by {n}."}
_SPLIT_BUCKETS = {"test": range(0, 10), "validation": range(10, 20), "train": range(20, 100)}
_SPLIT_ALIASES = {"dev": "validation", "val": "validation", "valid": "validation"}
_DEFAULT_SIZES = {"train": 5000, "validation": 500, "test": 500}
GENERATED = "generated"


@dataclass(frozen=True)
class ArithProblem:
    """A start number and the (operation, operand) steps applied to it in order."""

    start: int
    steps: tuple[tuple[str, int], ...]

    def question(self) -> str:
        words = " ".join(_OPERATION_WORDS[op].format(n=n) for op, n in self.steps)
        return f"Start with {self.start}. {words} What is the result?"

    def solution(self) -> str:
        value = self.start
        lines = []
        for op, n in self.steps:
            result = apply_operation(value, op, n)
            lines.append(f"{value}{op}{n}={result}.")
            value = result
        return " ".join(lines) + f" Final answer: {value}"

    def answer(self) -> int:
        value = self.start
        for op, n in self.steps:
            value = apply_operation(value, op, n)
        return value


_EQUATION = re.compile(r"(-?\d+)\s*([-+*])\s*(\d+)\s*=\s*(-?\d+)")


def apply_operation(value: int, op: str, n: int) -> int:
    """`value op n` for op in + - *."""
    if op == "+":
        return value + n
    if op == "-":
        return value - n
    return value * n


def split_of(question: str) -> str:
    """The split a question belongs to, from a hash of its text (never from the seed)."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big") % 100
    return next(name for name, buckets in _SPLIT_BUCKETS.items() if bucket in buckets)


class ArithTask(Task):
    """Generated arithmetic word problems with gold step-by-step solutions.

    Options (all keyword, all in `TaskConfig.options`):
      min_steps, max_steps: operations per problem (default 2, 3).
      min_number, max_number: range of the start number and operands (default 1, 20).
      operations: a subset of "+", "-", "*" (default ["+", "-"]).
      allow_negative: allow negative intermediate results (default False: a subtraction takes
        an operand no larger than the running value).
      size: problems per split (default 5000 train, 500 validation, 500 test).
      seed: generation seed (default 0).
      check_steps: `false` (default) or `train`: on training problems a completion is correct
        only when its equations ("a+b=c.") are the gold solution's too, not just its final
        answer (step-checked winners: a right answer reached by wrong steps loses); held-out
        problems are still scored by the final answer alone.
      answer_mode: `flexible` (default: a `\\boxed{}`, "the answer is", ... when there is no
        "Final answer:") or `strict` (the marker only); rules in `irpo.tasks.answers`.
    """

    name = "arith"
    has_gold_solution = True

    def __init__(
        self,
        *,
        min_steps: int = 2,
        max_steps: int = 3,
        min_number: int = 1,
        max_number: int = 20,
        operations: Sequence[str] = ("+", "-"),
        allow_negative: bool = False,
        size: int | None = None,
        seed: int = 0,
        check_steps: bool | str = False,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if check_steps not in (False, "train"):
            raise IrpoError(
                f"task arith: check_steps must be false or 'train', got {check_steps!r}"
            )
        if not 1 <= min_steps <= max_steps:
            raise IrpoError(
                f"task arith: need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}"
            )
        if not 0 <= min_number <= max_number:
            raise IrpoError(
                f"task arith: need 0 <= min_number <= max_number, got {min_number}, {max_number}"
            )
        unknown = [op for op in operations if op not in _OPERATION_WORDS]
        if unknown or not operations:
            raise IrpoError(
                f"task arith: operations must be a non-empty subset of + - *, got {list(operations)}"
            )
        if size is not None and size < 1:
            raise IrpoError(f"task arith: size must be at least 1, got {size}")
        self.min_steps, self.max_steps = min_steps, max_steps
        self.min_number, self.max_number = min_number, max_number
        self.operations = tuple(dict.fromkeys(operations))
        self.allow_negative = allow_negative
        self.size = size
        self.seed = seed
        self.check_steps = check_steps

    # ------------------------------------------------------------------ generation

    def _draw(self, rng: random.Random) -> ArithProblem | None:
        value = start = rng.randint(self.min_number, self.max_number)
        steps = []
        for _ in range(rng.randint(self.min_steps, self.max_steps)):
            op = rng.choice(self.operations)
            # Without negatives, "-" takes an operand no larger than the running value, so the
            # operations stay equally likely (redrawing the whole step would favour "+").
            if op == "-" and not self.allow_negative and value < self.min_number:
                return None  # no valid operand: drop this problem, the caller draws another
            high = self.max_number
            if op == "-" and not self.allow_negative:
                high = min(high, value)
            n = rng.randint(self.min_number, high)
            steps.append((op, n))
            value = apply_operation(value, op, n)
        return ArithProblem(start, tuple(steps))

    def generate(self, split: str, count: int) -> list[ArithProblem]:
        """The first `count` distinct problems of `split` for this seed (a prefix of a longer run)."""
        split = _SPLIT_ALIASES.get(split, split)
        if split not in _SPLIT_BUCKETS:
            raise IrpoError(
                f"task arith: unknown split {split!r} (known: {', '.join(_SPLIT_BUCKETS)})"
            )
        rng = random.Random(f"arith:{self.seed}:{split}")
        seen: set[str] = set()
        problems: list[ArithProblem] = []
        attempts = 0
        while len(problems) < count:
            attempts += 1
            if attempts > 100 * count + 10_000:
                raise IrpoError(
                    f"task arith: only {len(problems)} distinct {split} problems found for "
                    f"size {count}; widen the number range or the number of steps"
                )
            problem = self._draw(rng)
            if problem is None:
                continue
            question = problem.question()
            if question in seen or split_of(question) != split:
                continue
            seen.add(question)
            problems.append(problem)
        return problems

    # ------------------------------------------------------------------ Task interface

    def load_with_stats(
        self,
        source: str | None,
        split: str,
        *,
        limit: int | None = None,
        skip_bad_rows: bool = False,
    ) -> tuple[list[Problem], LoadStats]:
        """Generate the problems of `split`; `source` must be None or "generated"."""
        if source not in (None, GENERATED):
            raise IrpoError(
                f"task arith generates its problems: source must be empty or {GENERATED!r}, "
                f"got {source!r}"
            )
        canonical = _SPLIT_ALIASES.get(split, split)
        count = self.size if self.size is not None else _DEFAULT_SIZES.get(canonical, 500)
        if limit is not None:
            count = min(count, limit)
        problems = [self._to_problem(p, canonical) for p in self.generate(canonical, count)]
        return problems, LoadStats(source=GENERATED, rows=len(problems), loaded=len(problems))

    @staticmethod
    def _to_problem(problem: ArithProblem, split: str) -> Problem:
        question = problem.question()
        digest = hashlib.sha256(question.encode()).hexdigest()[:12]
        return Problem(
            id=f"arith-{digest}",
            question=question,
            answer=str(problem.answer()),
            solution=problem.solution(),
            meta={"split": split, "steps": len(problem.steps)},
        )

    def prompt(self, problem: Problem) -> str:
        """Deliberately short (module docstring): every character is a token for the char model."""
        return f"Question: {problem.question}\nSolution: "

    def score_as(self, completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
        value, rule = locate_number(completion, mode)
        if value is None:
            return Verdict(answer=None, correct=False)
        answer = format_number(value)
        correct = answer == problem.answer
        if (
            correct
            and self.check_steps == "train"
            and problem.meta.get("split") == "train"
            and problem.solution is not None
            and _EQUATION.findall(completion) != _EQUATION.findall(problem.solution)
        ):
            return Verdict(answer, False, rule)  # the right answer by wrong steps
        return Verdict(answer, correct, rule)

    def gold_completion(self, problem: Problem) -> str | None:
        return problem.solution
