"""`gsm8k`: grade-school math word problems (Cobbe et al., 2021) with the paper's zero-shot prompt.

Rows have `question` and `answer`; the answer field is the gold reasoning with calculator
annotations (`<<16-3-4=9>>`) and a last line `#### 18`. The gold answer is the text after the last
`####` with thousands separators removed ("1,080" -> "1080"). The gold solution (a winner in IRPO
for GSM8K, paper Sec. 2) is the reasoning without the annotations, ending "Final answer: 18".

Scoring reads the number after the last "Final answer:" (rules, answer modes and fall-backs,
"#### 18" among them, in `irpo.tasks.answers`) and compares numbers exactly ("18.00" == "18").
"""

from __future__ import annotations

import re

from irpo.records import Problem, Verdict
from irpo.tasks.answers import AnswerMode, format_number, locate_number, parse_number
from irpo.tasks.sources import BadRow, Row, RowTask

PROMPT = (
    "Your task is to answer the question below. Give step by step reasoning before you answer, "
    'and when you\'re ready to answer, please use the format "Final answer: ..."\n'
    "\n"
    "Question: {question}\n"
    "\n"
    "Solution:"
)
"""The paper's zero-shot GSM8K prompt (Pang et al. 2024, Appendix)."""


def score_number(completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
    """The number a completion states against the gold number, compared exactly."""
    value, rule = locate_number(completion, mode)
    if value is None:
        return Verdict(answer=None, correct=False)
    gold = parse_number(problem.answer)
    return Verdict(format_number(value), gold is not None and value == gold, rule)


_ANNOTATION = re.compile(r"<<[^<>]*>>")
_GOLD_NUMBER = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")


def split_gold(answer_field: str) -> tuple[str, str]:
    """(reasoning without calculator annotations, gold answer without commas) of a GSM8K answer.

    Raises BadRow when there is no `####` line or its value is not a plain number.
    """
    reasoning, sep, final = answer_field.rpartition("####")
    if not sep:
        raise BadRow("the 'answer' field has no '####' line")
    final = final.strip()
    if not _GOLD_NUMBER.match(final):
        raise BadRow(f"the gold answer after '####' is not a number: {final!r}")
    return _ANNOTATION.sub("", reasoning).strip(), final.replace(",", "")


def parse_row(row: Row, split: str) -> Problem:
    """A GSM8K row -> Problem (id: the row's `id` field when present, else "{split}/{index}")."""
    question = row.text("question")
    reasoning, answer = split_gold(row.text("answer"))
    row_id = row.data.get("id") if isinstance(row.data, dict) else None
    return Problem(
        id=str(row_id) if row_id is not None else f"{split}/{row.index}",
        question=question.strip(),
        answer=answer,
        solution=reasoning,
    )


class GSM8KTask(RowTask):
    """GSM8K with the paper's zero-shot prompt; numbers compared exactly.

    Options: `answer_mode` (`flexible`, default: the fall-backs of `irpo.tasks.answers` when a
    completion has no "Final answer:" marker; `strict`: the marker only).
    """

    name = "gsm8k"
    has_gold_solution = True
    source_hint = (
        "a folder with train.jsonl/test.jsonl, a JSONL file, "
        "or a Hugging Face id such as openai/gsm8k:main"
    )
    parse_row = staticmethod(parse_row)

    def prompt(self, problem: Problem) -> str:
        return PROMPT.format(question=problem.question)

    def score_as(self, completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
        return score_number(completion, problem, mode)

    def gold_completion(self, problem: Problem) -> str | None:
        if problem.solution is None:
            return None
        return f"{problem.solution}\nFinal answer: {problem.answer}"

    def audit_gold(self, problem: Problem) -> list[str]:
        issues = []
        if parse_number(problem.answer) is None:
            issues.append(f"gold answer {problem.answer!r} is not a number")
        return issues + super().audit_gold(problem)
