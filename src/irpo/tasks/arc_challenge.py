"""`arc_challenge`: ARC-Challenge science questions (Clark et al., 2018), multiple choice.

Rows follow AI2's JSONL format, `{"id", "question": {"stem", "choices": [{"text", "label"}]},
"answerKey"}`; the Hugging Face layout (`question` as text, `choices: {"text": [...],
"label": [...]}`) is read too. Labels are kept as given (A-E, or 1-5 on some questions) and a
question has 3 to 5 options. ARC has no gold reasoning, so IRPO drops questions without a correct
sample (paper Sec. 2).

A folder source picks the split's file by name (`ARC-Challenge-Dev.jsonl` for "dev" or
"validation"). Scoring reads the option named after the last "Final answer:" (rules in
`irpo.tasks.choices`); under the default `flexible` answer mode, without a marker, the fall-backs
of `irpo.tasks.answers` ("the correct answer is C", "Answer: C", `\\boxed{C}`, ...).
"""

from __future__ import annotations

from irpo.records import Problem, Verdict
from irpo.tasks.answers import AnswerMode, candidates
from irpo.tasks.choices import choice_label
from irpo.tasks.sources import BadRow, Row, RowTask

INSTRUCTION = (
    "Your task is to answer the question below. Give step by step reasoning before you answer, "
    "and when you're ready to answer, please conclude using the format \"Final answer: "
    '(insert letter here)"'
)
"""The paper's zero-shot ARC instruction (Pang et al. 2024, Appendix)."""

MIN_CHOICES, MAX_CHOICES = 3, 5


def score_choice(completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
    """The option a completion names (the first answer statement that names one) against the key."""
    choices = problem.choices or ()
    for candidate in candidates(completion, mode):
        label = choice_label(candidate.span, choices)
        if label is not None:
            return Verdict(label, label == problem.answer, candidate.rule)
    return Verdict(answer=None, correct=False)


def _choices(row: Row) -> tuple[tuple[str, str], ...]:
    data = row.data
    question = data.get("question")
    raw = question.get("choices") if isinstance(question, dict) else data.get("choices")
    if isinstance(raw, dict):  # Hugging Face layout: {"text": [...], "label": [...]}
        texts, labels = raw.get("text"), raw.get("label")
        if not isinstance(texts, list) or not isinstance(labels, list) or len(texts) != len(labels):
            raise BadRow("'choices' needs equally long 'text' and 'label' lists")
        raw = [{"text": t, "label": lab} for t, lab in zip(texts, labels, strict=True)]
    if not isinstance(raw, list) or not raw:
        raise BadRow("no 'choices' list")
    choices = []
    for choice in raw:
        if (
            not isinstance(choice, dict)
            or choice.get("label") in (None, "")
            or choice.get("text") is None
        ):
            raise BadRow("every choice needs a 'label' and a 'text'")
        choices.append((str(choice["label"]).strip(), str(choice["text"]).strip()))
    labels = [label for label, _ in choices]
    if len(set(labels)) != len(labels):
        raise BadRow(f"repeated choice labels {labels}")
    if not MIN_CHOICES <= len(choices) <= MAX_CHOICES:
        raise BadRow(f"{len(choices)} choices; ARC questions have {MIN_CHOICES} to {MAX_CHOICES}")
    return tuple(choices)


def parse_row(row: Row, split: str) -> Problem:
    """An ARC row -> Problem; the answer key must be one of the option labels."""
    if not isinstance(row.data, dict):
        raise BadRow(f"expected a JSON object, got {type(row.data).__name__}")
    question = row.data.get("question")
    stem = question.get("stem") if isinstance(question, dict) else question
    if not isinstance(stem, str) or not stem.strip():
        raise BadRow("no question text ('question.stem' or 'question')")
    choices = _choices(row)
    key = row.text("answerKey").strip()
    labels = [label for label, _ in choices]
    if key not in labels:
        raise BadRow(f"answerKey {key!r} is not one of the labels {labels}")
    row_id = row.data.get("id")
    return Problem(
        id=str(row_id) if row_id not in (None, "") else f"{split}/{row.index}",
        question=stem.strip(),
        answer=key,
        choices=choices,
    )


class ArcChallengeTask(RowTask):
    """ARC-Challenge with the paper's zero-shot prompt; the answer is an option label."""

    name = "arc_challenge"
    has_gold_solution = False
    source_hint = (
        "a folder with ARC-Challenge-{Train,Dev,Test}"
        ".jsonl, one such file, or a Hugging Face id such as allenai/ai2_arc:ARC-Challenge"
    )
    parse_row = staticmethod(parse_row)

    def prompt(self, problem: Problem) -> str:
        options = "\n".join(f"({label}) {text}" for label, text in problem.choices or ())
        return f"{INSTRUCTION}\n\nQuestion: {problem.question}\n{options}\n\nSolution:"

    def score_as(self, completion: str, problem: Problem, mode: AnswerMode) -> Verdict:
        return score_choice(completion, problem, mode)

    def audit_gold(self, problem: Problem) -> list[str]:
        labels = [label for label, _ in problem.choices or ()]
        if problem.answer not in labels:
            return [f"answer key {problem.answer!r} is not one of the labels {labels}"]
        return []
