"""arc_challenge: the prompt, label extraction from real-looking outputs, loading, the real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irpo.errors import IrpoError
from irpo.records import Problem
from irpo.tasks import get_task
from irpo.tasks.arc_challenge import ArcChallengeTask
from irpo.tasks.choices import choice_label

PALMS = Problem(
    id="Mercury_SC_415702",
    question="Which skin surface will produce the most heat?",
    answer="A",
    choices=(
        ("A", "dry palms"),
        ("B", "wet palms"),
        ("C", "palms covered with oil"),
        ("D", "palms covered with lotion"),
    ),
)
DIGITS = Problem(
    id="NYSEDREGENTS_2015_4_8",
    question="Which tool is used to measure mass?",
    answer="3",
    choices=(("1", "ruler"), ("2", "thermometer"), ("3", "balance"), ("4", "graduated cylinder")),
)
FIVE = Problem(
    id="five",
    question="Which is a gas at room temperature?",
    answer="E",
    choices=(("A", "iron"), ("B", "salt"), ("C", "water"), ("D", "wood"), ("E", "oxygen")),
)


def test_prompt_lists_options() -> None:
    assert ArcChallengeTask().prompt(PALMS) == (
        "Your task is to answer the question below. Give step by step reasoning before you "
        "answer, and when you're ready to answer, please conclude using the format "
        '"Final answer: (insert letter here)"\n\n'
        "Question: Which skin surface will produce the most heat?\n"
        "(A) dry palms\n(B) wet palms\n(C) palms covered with oil\n(D) palms covered with lotion"
        "\n\nSolution:"
    )
    assert "\n(1) ruler\n(2) thermometer\n(3) balance\n(4) graduated cylinder\n" in (
        ArcChallengeTask().prompt(DIGITS)
    )


@pytest.mark.parametrize(
    ("completion", "answer", "correct"),
    [
        ("Rubbing dry hands makes the most friction.\nFinal answer: A", "A", True),
        ("Final answer: (A)", "A", True),
        ("Final answer: A)", "A", True),
        ("Final answer: A. dry palms", "A", True),
        ("Final answer: (A) dry palms", "A", True),
        ("Final answer: **A**", "A", True),
        ("**Final answer:** (A)", "A", True),
        ("Final answer: Option A", "A", True),
        ("Final answer: The answer is (A).", "A", True),
        ("Final answer: $\\boxed{A}$", "A", True),
        ("Final answer: (a)", "A", True),
        ("Final answer: dry palms", "A", True),  # the option text, unambiguous
        ("Final answer: Dry palms.", "A", True),
        ("Final answer: A\n\nQuestion: Which planet is largest?\n(A) Mars", "A", True),
        ("Final answer: B\nOn second thought, Final answer: A", "A", True),
        ("Friction heats dry skin most. The answer is (A).", "A", True),  # no marker: fall-back
        # wrong but close
        ("Final answer: B", "B", False),
        ("Final answer: (C) palms covered with oil", "C", False),
        ("Final answer: A\nOn second thought, Final answer: B", "B", False),
        ("Final answer: (B) dry palms", "B", False),  # the label wins over the text
        ("Final answer: wet palms", "B", False),
        # unparsed
        ("Final answer: E", None, False),  # not an option of this question
        ("Final answer: palms", None, False),  # matches no option text exactly
        ("Final answer: A fold of skin", None, False),  # the article "A", not the label
        ("Final answer: (insert letter here)", None, False),
        ("Final answer: A or B", None, False),
        ("Dry palms produce the most heat.", None, False),
        ("Final answer:", None, False),
        ("", None, False),
    ],
)
def test_score_letters(completion: str, answer: str | None, correct: bool) -> None:
    verdict = ArcChallengeTask().score(completion, PALMS)
    assert (verdict.answer, verdict.correct) == (answer, correct)


@pytest.mark.parametrize(
    ("completion", "problem", "answer", "correct"),
    [
        ("Final answer: 3", DIGITS, "3", True),
        ("Final answer: (3)", DIGITS, "3", True),
        ("Final answer: 3. balance", DIGITS, "3", True),
        ("Final answer: balance", DIGITS, "3", True),
        ("Final answer: 2", DIGITS, "2", False),
        ("Final answer: C", DIGITS, None, False),  # letters do not map to digit labels
        ("Final answer: 5", DIGITS, None, False),
        ("Final answer: E", FIVE, "E", True),
        ("Final answer: (E) oxygen", FIVE, "E", True),
        ("Final answer: D", FIVE, "D", False),
    ],
)
def test_score_digits_and_five_options(
    completion: str, problem: Problem, answer: str | None, correct: bool
) -> None:
    verdict = ArcChallengeTask().score(completion, problem)
    assert (verdict.answer, verdict.correct) == (answer, correct)


def test_repeated_option_text_is_ambiguous() -> None:
    choices = (("A", "yes"), ("B", "no"), ("C", "Yes"))
    assert choice_label("yes", choices) is None
    assert choice_label("no", choices) == "B"


def _arc_row(i: int, key: str = "A", labels: str = "ABCD") -> dict[str, object]:
    return {
        "id": f"q{i}",
        "question": {
            "stem": f"Question {i}?",
            "choices": [{"text": f"option {lab}", "label": lab} for lab in labels],
        },
        "answerKey": key,
    }


def test_load_folder_splits_and_hf_layout(tmp_path: Path) -> None:
    for name, rows in (
        ("ARC-Challenge-Train.jsonl", [_arc_row(1), _arc_row(2, "E", "ABCDE")]),
        ("ARC-Challenge-Dev.jsonl", [_arc_row(3, "2", "123")]),
        ("ARC-Challenge-Test.jsonl", [_arc_row(4)]),
        ("ARC-Challenge-Test.csv", []),
    ):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task("arc_challenge")
    assert [p.id for p in task.load(str(tmp_path), "train")] == ["q1", "q2"]
    dev = task.load(str(tmp_path), "validation")
    assert dev[0].choices == (("1", "option 1"), ("2", "option 2"), ("3", "option 3"))
    assert dev[0].answer == "2"
    assert [p.id for p in task.load(str(tmp_path), "dev")] == ["q3"]
    direct = task.load(str(tmp_path / "ARC-Challenge-Test.jsonl"), "whatever")
    assert [p.id for p in direct] == ["q4"]
    hf = tmp_path / "hf.jsonl"
    hf.write_text(
        json.dumps(
            {
                "id": "h1",
                "question": "Which?",
                "choices": {"text": ["x", "y", "z"], "label": ["A", "B", "C"]},
                "answerKey": "C",
            }
        )
        + "\n"
    )
    (problem,) = task.load(str(hf), "test")
    assert (problem.question, problem.answer, problem.choices) == (
        "Which?",
        "C",
        (("A", "x"), ("B", "y"), ("C", "z")),
    )


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (_arc_row(1, "F"), "answerKey 'F' is not one of the labels"),
        (_arc_row(1, "A", "AB"), "2 choices; ARC questions have 3 to 5"),
        (_arc_row(1, "A", "ABCDEF"), "6 choices"),
        (_arc_row(1, "A", "AAB"), "repeated choice labels"),
        (
            {"id": "x", "question": {"stem": "", "choices": []}, "answerKey": "A"},
            "no question text",
        ),
        ({"id": "x", "question": {"stem": "Q?"}, "answerKey": "A"}, "no 'choices' list"),
        ({**_arc_row(1), "answerKey": None}, "field 'answerKey' is null"),
        ([1, 2], "expected a JSON object, got list"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: object, message: str) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(_arc_row(0)) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(IrpoError, match=rf"test\.jsonl:2: .*{message}"):
        ArcChallengeTask().load(str(path), "test")


def test_shared_data_answer_keys_valid(shared_data: Path) -> None:
    task = ArcChallengeTask()
    counts = {}
    for split in ("train", "dev", "test"):
        problems = task.load(str(shared_data / "arc_challenge"), split)
        counts[split] = len(problems)
        assert [p.id for p in problems if task.audit_gold(p)] == []
        assert all(3 <= len(p.choices or ()) <= 5 for p in problems)
    assert counts == {"train": 1119, "dev": 299, "test": 1172}
