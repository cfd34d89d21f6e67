"""`math`: competition mathematics (MATH, Hendrycks et al., 2021; also MATH500) with 4-shot prompts.

Rows have `problem` (or `question`), `solution`, and optionally `answer` (MATH500) and
`unique_id`. The gold answer is the `answer` field when present, else the content of the last
`\\boxed{...}` / `\\fbox{...}` of the solution (braces matched, never a regex).

The prompt is the paper's: an instruction, then 4 fixed worked examples from the MATH train split,
then the question. The examples ship with the package (`math_fewshot.json`), so the prompt needs
no dataset at run time. They were chosen by a fixed rule: for each of Algebra, Counting &
Probability, Number Theory and Prealgebra, the Level 3 train problem with the shortest
problem + solution text among those with exactly one `\\boxed` and no `[asy]` figure (ties by id):
    train/algebra/79.json, train/counting_and_probability/239.json,
    train/number_theory/723.json, train/prealgebra/2026.json

Scoring: the answer after the last "Final answer:" (unwrapped from `$...$` / `\\boxed{}`); under
the default `flexible` answer mode, with no marker, the fall-backs of `irpo.tasks.answers` (the
last `\\boxed{}`, which the prompt asks for, "The answer is: X", ...). When the gold answer has
several parts ("-3, 2"), a group of boxes (`\\boxed{-3} \\text{ and } \\boxed{2}`) is read
together; a one-part gold takes the last box. Equal strings after light normalisation are correct
at once; otherwise the parts are compared one by one, exactly where both are exact numbers, and
by Math-Verify (`irpo.tasks.math_judge`: a wall-clock limit per check, safe in any thread; a
check that runs out of time counts as wrong).
"""

from __future__ import annotations

import json
from functools import cached_property
from importlib import resources
from typing import Any

from irpo.errors import IrpoError
from irpo.records import Problem, Verdict
from irpo.tasks.answers import AnswerMode, Candidate, candidates, last_boxed
from irpo.tasks.math_judge import MathJudge, answer_parts, for_math_verify, has_words
from irpo.tasks.sources import BadRow, Row, RowTask

INSTRUCTION = (
    "Your task is to answer the last question below. Give step by step reasoning before you "
    "answer, and when you're ready to answer, please wrap your answer in \\boxed, and conclude "
    'using the format "Final answer: ..."'
)
"""The paper's MATH instruction (Pang et al. 2024, Appendix)."""

FEWSHOT_FILE = "math_fewshot.json"


def balanced(answer: str) -> bool:
    """True when the braces of `answer` close in order (escaped `\\{` `\\}` aside)."""
    depth = 0
    for char in answer.replace("\\{", "").replace("\\}", ""):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def fewshot_examples() -> list[dict[str, str]]:
    """The 4 worked examples of the prompt (unique_id, problem, solution, answer)."""
    text = resources.files("irpo.tasks").joinpath(FEWSHOT_FILE).read_text(encoding="utf-8")
    examples: list[dict[str, str]] = json.loads(text)["examples"]
    return examples


def math_answer(candidate: Candidate, several_parts: bool) -> str | None:
    """The answer a candidate states for a gold with one or several parts; None when it cannot
    be scored (unbalanced braces: a clipped generation; prose after "the answer is")."""
    if several_parts and len(candidate.boxes) > 1:
        span = ", ".join(candidate.boxes)
    else:
        span = candidate.span
    if candidate.rule in ("answer_is", "last_line") and has_words(span):
        return None  # "the answer is the sum of the roots" states no value
    if not span or not balanced(span):
        return None  # a clipped answer ("\\frac{1}{2") is not a guess worth scoring
    return span


def locate_math(completion: str, gold: str, mode: AnswerMode) -> tuple[str | None, str | None]:
    """(the answer of the first answer statement that can be scored, its rule), or (None, None)."""
    several_parts = len(answer_parts(gold)) > 1
    for candidate in candidates(completion, mode):
        answer = math_answer(candidate, several_parts)
        if answer is not None:
            return answer, candidate.rule
    return None, None


def score_math(judge: MathJudge, completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
    """The first answer statement that can be scored, judged against the gold answer."""
    answer, rule = locate_math(completion, problem.answer, mode)
    if answer is None:
        return Verdict(answer=None, correct=False)
    return Verdict(answer, judge.same_answer(problem.answer, answer), rule)


def _one_line(answer: str) -> str:
    return " ".join(answer.split())


def parse_row(row: Row, split: str) -> Problem:
    """A MATH / MATH500 row -> Problem; `meta["boxed"]` keeps the solution's boxed answer."""
    if not isinstance(row.data, dict):
        raise BadRow(f"expected a JSON object, got {type(row.data).__name__}")
    question = row.text("problem" if "problem" in row.data else "question")
    solution = row.data.get("solution")
    if solution is not None and not isinstance(solution, str):
        raise BadRow("field 'solution' should be text")
    boxed = last_boxed(solution) if solution else None
    answer_field = row.data.get("answer")
    if answer_field is not None and str(answer_field).strip():
        answer = str(answer_field).strip()
    elif boxed is not None and boxed.strip():
        answer = boxed.strip()
    elif boxed is not None:
        raise BadRow("the solution's last \\boxed{} is empty and there is no 'answer' field")
    elif solution:
        raise BadRow("the solution has no \\boxed{...} answer and there is no 'answer' field")
    else:
        raise BadRow("no 'answer' field and no 'solution' with a \\boxed{...} answer")
    meta: dict[str, Any] = {k: row.data[k] for k in ("level", "type", "subject") if k in row.data}
    if boxed is not None:
        meta["boxed"] = boxed.strip()
    row_id = row.data.get("unique_id", row.data.get("id"))
    return Problem(
        id=str(row_id) if row_id not in (None, "") else f"{split}/{row.index}",
        question=question.strip(),
        answer=answer,
        solution=solution.strip() if solution else None,
        meta=meta,
    )


class MathTask(RowTask):
    """MATH with the paper's 4-shot prompt; answers judged by Math-Verify.

    Options: `verify_timeout` (seconds per Math-Verify check, default 5; None runs in the calling
    thread without a limit), `answer_mode` (`flexible`, default: the last `\\boxed{}` and the
    other fall-backs when there is no "Final answer:" marker; `strict`: the marker only).
    """

    name = "math"
    has_gold_solution = True
    source_hint = (
        "a folder with MATH_train.jsonl/MATH_test.jsonl, a "
        "JSONL file (MATH500's test.jsonl), or a Hugging Face dataset id"
    )
    parse_row = staticmethod(parse_row)

    def __init__(self, *, verify_timeout: float | None = 5.0, **options: Any) -> None:
        super().__init__(**options)
        if verify_timeout is not None and verify_timeout <= 0:
            raise IrpoError(f"task math: verify_timeout must be positive, got {verify_timeout}")
        self.judge = MathJudge(timeout=verify_timeout)

    @cached_property
    def _prefix(self) -> str:
        shots = [
            f"Question: {e['problem']}\nSolution: {e['solution']}\nFinal answer: ${e['answer']}$"
            for e in fewshot_examples()
        ]
        return INSTRUCTION + "\n\n" + "\n\n".join(shots) + "\n\n"

    def prompt(self, problem: Problem) -> str:
        return f"{self._prefix}Question: {problem.question}\nSolution:"

    def extract(self, completion: str, mode: AnswerMode | None = None) -> str | None:
        """The raw answer a completion gives for a one-part gold (after "Final answer:", else
        the fall-backs of the mode); None when there is none or its braces do not balance."""
        return locate_math(completion, "", mode or self.answer_mode)[0]

    def score_as(self, completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
        return score_math(self.judge, completion, problem, mode)

    def same_answer(self, first: str, other: str) -> bool:
        """Math-Verify equivalence ("0.5" and "\\frac{1}{2}" are one majority-vote group)."""
        return self.judge.same_answer(first, other)

    def gold_completion(self, problem: Problem) -> str | None:
        if problem.solution is None:
            return None
        return f"{problem.solution}\nFinal answer: ${_one_line(problem.answer)}$"

    def audit_gold(self, problem: Problem) -> list[str]:
        """The gold parses; the gold completion's answer is equal to it by Math-Verify itself (not
        the string fast path); and an `answer` field agrees with the solution's boxed answer."""
        issues = []
        if not self.judge.parses(for_math_verify(problem.answer)):
            issues.append(f"Math-Verify cannot parse the gold answer {problem.answer!r}")
        completion = self.gold_completion(problem)
        if completion is not None:
            extracted = locate_math(completion, problem.answer, "strict")[0]
            if extracted is None or not self.judge.same_answer(
                problem.answer, extracted, fast_path=False
            ):
                issues.append(f"gold completion's answer {extracted!r} is not judged equal")
        boxed = problem.meta.get("boxed")
        if boxed is not None and not self.judge.same_answer(problem.answer, boxed):
            issues.append(f"answer field {problem.answer!r} differs from the boxed {boxed!r}")
        return issues
