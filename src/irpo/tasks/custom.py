"""`custom`: a task defined by a data file, field names and an answer type, without Python.

    task:
      name: custom
      train_source: data/train.jsonl
      eval_source: data/test.jsonl
      options:
        answer_type: number        # number | exact | choice | math
        question_field: q
        answer_field: a
        solution_field: worked     # optional gold reasoning (a winner when configured)
        choices_field: options     # choice only: a list of texts, or of {label, text}

Answer types share the extraction of the built-in tasks ("Final answer:", last one wins; the
`answer_mode` option, `flexible` or `strict`, as for every task):
`number` compares numbers exactly (like gsm8k), `exact` compares strings after trimming,
unwrapping and collapsing spaces (case-insensitive unless `case_sensitive: true`), `choice` reads
an option label (like arc_challenge; plain lists are labelled A, B, C, ...), `math` uses
Math-Verify (like math).

The prompt is the paper's zero-shot GSM8K instruction; `prompt_template` replaces it and may use
`{question}` and, for choice tasks, `{choices}` (one "(A) text" line per option).

From Python, subclass `CustomTask` and override `parse_row` (a `Row` -> `Problem`, raising
`BadRow` for unusable rows) or `score`; or subclass `irpo.tasks.base.Task` directly and use
`irpo.tasks.sources.load_rows` for file handling.
"""

from __future__ import annotations

import string
from typing import Any, Literal, get_args

from irpo.errors import IrpoError
from irpo.records import Problem, Verdict
from irpo.tasks.answers import AnswerMode, candidates, parse_number
from irpo.tasks.arc_challenge import score_choice
from irpo.tasks.competition_math import score_math
from irpo.tasks.gsm8k import PROMPT as ZERO_SHOT_PROMPT
from irpo.tasks.gsm8k import score_number
from irpo.tasks.math_judge import MathJudge
from irpo.tasks.sources import BadRow, Row, RowTask

AnswerType = Literal["number", "exact", "choice", "math"]
ANSWER_TYPES: tuple[str, ...] = get_args(AnswerType)


def _collapse(text: str, case_sensitive: bool) -> str:
    text = " ".join(text.split())
    return text if case_sensitive else text.lower()


class CustomTask(RowTask):
    """A task read from JSONL / JSON / Parquet with configurable fields (module docstring)."""

    name = "custom"

    def __init__(
        self,
        *,
        answer_type: str = "number",
        question_field: str = "question",
        answer_field: str = "answer",
        solution_field: str | None = None,
        choices_field: str = "choices",
        id_field: str = "id",
        prompt_template: str | None = None,
        case_sensitive: bool = False,
        verify_timeout: float | None = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if answer_type not in ANSWER_TYPES:
            raise IrpoError(
                f"task custom: answer_type must be one of {', '.join(ANSWER_TYPES)}, got {answer_type!r}"
            )
        self.answer_type = answer_type
        self.question_field, self.answer_field = question_field, answer_field
        self.solution_field, self.choices_field, self.id_field = (
            solution_field,
            choices_field,
            id_field,
        )
        self.template = prompt_template or ZERO_SHOT_PROMPT
        if "{question}" not in self.template:
            raise IrpoError("task custom: prompt_template must contain {question}")
        self.case_sensitive = case_sensitive
        self.has_gold_solution = solution_field is not None
        self.judge = MathJudge(timeout=verify_timeout) if answer_type == "math" else None

    # ------------------------------------------------------------------ loading

    def parse_row(self, row: Row, split: str) -> Problem:
        """One row -> Problem; raise BadRow when the row cannot be used."""
        question = row.text(self.question_field)
        answer = row.text(self.answer_field).strip()
        choices = self._choices(row) if self.answer_type == "choice" else None
        if choices is not None and answer not in dict(choices):
            raise BadRow(f"answer {answer!r} is not one of the labels {list(dict(choices))}")
        if self.answer_type == "number" and parse_number(answer) is None:
            raise BadRow(f"answer {answer!r} is not a number")
        solution = None
        if self.solution_field is not None:
            solution = row.text(self.solution_field).strip()
        row_id = row.data.get(self.id_field)
        return Problem(
            id=str(row_id) if row_id not in (None, "") else f"{split}/{row.index}",
            question=question.strip(),
            answer=answer,
            solution=solution,
            choices=choices,
        )

    def _choices(self, row: Row) -> tuple[tuple[str, str], ...]:
        raw = row.field(self.choices_field)
        if not isinstance(raw, list) or len(raw) < 2:
            raise BadRow(f"field {self.choices_field!r} should be a list of at least 2 options")
        if len(raw) > len(string.ascii_uppercase):
            raise BadRow(f"field {self.choices_field!r} has more than 26 options")
        choices = []
        for i, item in enumerate(raw):
            if isinstance(item, dict) and "label" in item and "text" in item:
                choices.append((str(item["label"]).strip(), str(item["text"]).strip()))
            elif isinstance(item, str | int | float) and not isinstance(item, bool):
                choices.append((string.ascii_uppercase[i], str(item).strip()))
            else:
                raise BadRow(
                    f"option {i + 1} of {self.choices_field!r} is neither text nor {{label, text}}"
                )
        if len({label for label, _ in choices}) != len(choices):
            raise BadRow(f"repeated labels in {self.choices_field!r}")
        return tuple(choices)

    # ------------------------------------------------------------------ prompt and score

    def prompt(self, problem: Problem) -> str:
        options = "\n".join(f"({label}) {text}" for label, text in problem.choices or ())
        return self.template.replace("{question}", problem.question).replace("{choices}", options)

    def score_as(self, completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
        if self.answer_type == "number":
            return score_number(completion, problem, mode)
        if self.answer_type == "choice":
            return score_choice(completion, problem, mode)
        if self.answer_type == "math":
            assert self.judge is not None
            return score_math(self.judge, completion, problem, mode)
        gold = _collapse(problem.answer, self.case_sensitive)
        for candidate in candidates(completion, mode):
            answer = _collapse(candidate.span, self.case_sensitive)
            return Verdict(answer, answer == gold, candidate.rule)
        return Verdict(answer=None, correct=False)

    def gold_completion(self, problem: Problem) -> str | None:
        if problem.solution is None:
            return None
        return f"{problem.solution}\nFinal answer: {' '.join(problem.answer.split())}"
