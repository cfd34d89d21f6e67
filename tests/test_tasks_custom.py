"""custom: tasks defined by options (no Python) and by subclassing; get_task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irpo.errors import IrpoError
from irpo.records import Problem, Verdict
from irpo.tasks import TASK_NAMES, get_task
from irpo.tasks.custom import CustomTask
from irpo.tasks.sources import BadRow, Row


def _jsonl(path: Path, rows: list[object]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_get_task_names_and_unknown() -> None:
    assert TASK_NAMES == ("gsm8k", "arc_challenge", "math", "arith", "custom")
    for name in TASK_NAMES:
        assert get_task(name).name == name
    with pytest.raises(
        IrpoError, match="unknown task 'gsm9k'; known tasks: gsm8k, arc_challenge, math, arith"
    ):
        get_task("gsm9k")


def test_number_task_from_options(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "qa.jsonl",
        [
            {"q": "How many legs do 3 spiders have?", "a": 24, "work": "3 * 8 = 24"},
            {"q": "Half of 7?", "a": "3.5", "work": "7 / 2 = 3.5"},
        ],
    )
    task = get_task(
        "custom", answer_type="number", question_field="q", answer_field="a", solution_field="work"
    )
    spiders, half = task.load(source, "train")
    assert (spiders.id, spiders.question, spiders.answer, spiders.solution) == (
        "train/0",
        "How many legs do 3 spiders have?",
        "24",
        "3 * 8 = 24",
    )
    assert task.has_gold_solution
    assert task.prompt(spiders).endswith("Question: How many legs do 3 spiders have?\n\nSolution:")
    assert task.gold_completion(spiders) == "3 * 8 = 24\nFinal answer: 24"
    assert task.score("Final answer: 24 legs", spiders) == Verdict("24", True)
    assert task.score("Final answer: 3.50", half) == Verdict("3.5", True)
    assert task.score("Final answer: 3", half) == Verdict("3", False)
    assert task.score("Final answer: many", half) == Verdict(None, False)


def test_exact_task(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "capitals.jsonl", [{"question": "Capital of France?", "answer": "Paris"}]
    )
    task = get_task("custom", answer_type="exact")
    (problem,) = task.load(source, "test")
    assert task.score("Final answer: paris.", problem) == Verdict("paris", True)
    assert task.score("Final answer: **Paris**", problem) == Verdict("paris", True)
    assert task.score("Final answer: Paris, France", problem) == Verdict("paris, france", False)
    assert task.score("It is \\boxed{Paris}", problem) == Verdict("paris", True)
    strict = get_task("custom", answer_type="exact", case_sensitive=True)
    assert strict.score("Final answer: paris", problem) == Verdict("paris", False)
    assert strict.gold_completion(problem) is None


def test_choice_task_with_plain_and_labelled_options(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "mc.jsonl",
        [
            {"id": "m1", "question": "2+2?", "choices": ["3", "4", "5"], "answer": "B"},
            {
                "id": "m2",
                "question": "Colour of the sky?",
                "choices": [{"label": "1", "text": "green"}, {"label": "2", "text": "blue"}],
                "answer": "2",
            },
        ],
    )
    task = get_task(
        "custom",
        answer_type="choice",
        prompt_template="Q: {question}\n{choices}\nA:",
    )
    m1, m2 = task.load(source, "test")
    assert m1.choices == (("A", "3"), ("B", "4"), ("C", "5"))
    assert task.prompt(m1) == "Q: 2+2?\n(A) 3\n(B) 4\n(C) 5\nA:"
    assert task.score("Final answer: (B)", m1) == Verdict("B", True)
    assert task.score("Final answer: 4", m1) == Verdict("B", True)  # the option text
    assert task.score("Final answer: C", m1) == Verdict("C", False)
    assert task.score("Final answer: blue", m2) == Verdict("2", True)
    assert task.score("Final answer: 1", m2) == Verdict("1", False)


def test_math_task_from_options(tmp_path: Path) -> None:
    source = _jsonl(
        tmp_path / "m.jsonl", [{"problem": "Half?", "solution_text": "x", "ans": "\\frac12"}]
    )
    task = get_task("custom", answer_type="math", question_field="problem", answer_field="ans")
    (problem,) = task.load(source, "test")
    assert task.score("Final answer: $0.5$", problem) == Verdict("0.5", True)
    assert task.score("Final answer: $0.25$", problem) == Verdict("0.25", False)


@pytest.mark.parametrize(
    ("options", "rows", "message"),
    [
        (
            {"answer_type": "number"},
            [{"question": "q", "answer": "many"}],
            "answer 'many' is not a number",
        ),
        ({"answer_type": "choice"}, [{"question": "q", "answer": "A"}], "no 'choices' field"),
        (
            {"answer_type": "choice"},
            [{"question": "q", "answer": "D", "choices": ["x", "y"]}],
            "answer 'D' is not one of the labels",
        ),
        (
            {"answer_type": "choice"},
            [{"question": "q", "answer": "A", "choices": ["x"]}],
            "field 'choices' should be a list of at least 2 options",
        ),
        ({"answer_type": "exact"}, [{"question": "q"}], "no 'answer' field"),
        (
            {"answer_type": "exact"},
            [{"question": ["q"], "answer": "a"}],
            "field 'question' should be text, got list",
        ),
        ({"solution_field": "s"}, [{"question": "q", "answer": "1"}], "no 's' field"),
    ],
)
def test_bad_rows(
    tmp_path: Path, options: dict[str, str], rows: list[object], message: str
) -> None:
    source = _jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(IrpoError, match=rf"d\.jsonl:1: {message}"):
        get_task("custom", **options).load(source, "test")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"answer_type": "regex"}, "answer_type must be one of number, exact, choice, math"),
        ({"prompt_template": "no placeholder"}, "must contain {question}"),
        ({"answer_typ": "number"}, "unknown option(s) answer_typ"),
    ],
)
def test_bad_options(options: dict[str, str], message: str) -> None:
    with pytest.raises(IrpoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_task("custom", **options)


class Reversed(CustomTask):
    """A Python-defined task: the answer is the question reversed; rows hold only `word`."""

    name = "reversed"

    def parse_row(self, row: Row, split: str) -> Problem:
        word = row.text("word")
        if not word.isalpha():
            raise BadRow(f"{word!r} is not a word")
        return Problem(id=f"{split}/{row.index}", question=word, answer=word[::-1])


def test_subclassing(tmp_path: Path) -> None:
    source = _jsonl(tmp_path / "w.jsonl", [{"word": "abc"}, {"word": "a b"}, {"word": "xy"}])
    task = Reversed(answer_type="exact", case_sensitive=True)
    with pytest.raises(IrpoError, match=r"task reversed: .*w\.jsonl:2: 'a b' is not a word"):
        task.load(source, "train")
    problems = task.load(source, "train", skip_bad_rows=True)
    assert [p.answer for p in problems] == ["cba", "yx"]
    assert task.score("Final answer: cba", problems[0]) == Verdict("cba", True)
    assert task.score("Final answer: CBA", problems[0]) == Verdict("CBA", False)
