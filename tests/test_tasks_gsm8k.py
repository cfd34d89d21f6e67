"""gsm8k: the paper's prompt, gold parsing, scoring of real-looking outputs, the real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from irpo.errors import IrpoError
from irpo.records import Problem
from irpo.tasks import get_task
from irpo.tasks.gsm8k import GSM8KTask, split_gold

JANET = Problem(
    id="test/0",
    question="Janet's ducks lay 16 eggs per day. ... How much in dollars does she make every day?",
    answer="18",
)
HOUSE = Problem(id="test/2", question="How much profit did he make?", answer="70000")
NEGATIVE = Problem(id="train/9", question="What is the change in temperature?", answer="-7")


def test_prompt_is_the_papers() -> None:
    assert GSM8KTask().prompt(JANET) == (
        "Your task is to answer the question below. Give step by step reasoning before you "
        'answer, and when you\'re ready to answer, please use the format "Final answer: ..."\n\n'
        f"Question: {JANET.question}\n\nSolution:"
    )


def test_split_gold_removes_annotations_and_commas() -> None:
    reasoning, answer = split_gold(
        "The cost came out to 80,000+50,000=$<<80000+50000=130000>>130,000\n"
        "So he made 200,000-130,000=$<<200000-130000=70000>>70,000\n#### 70,000"
    )
    assert answer == "70000"
    assert reasoning == (
        "The cost came out to 80,000+50,000=$130,000\nSo he made 200,000-130,000=$70,000"
    )


def test_gold_completion_scores_correct() -> None:
    task = GSM8KTask()
    problem = Problem(id="p", question="q", answer="1080", solution="9 * 120 = 1,080 square feet.")
    gold = task.gold_completion(problem)
    assert gold == "9 * 120 = 1,080 square feet.\nFinal answer: 1080"
    assert task.score(gold, problem).correct
    assert task.audit_gold(problem) == []
    assert task.gold_completion(JANET) is None


@pytest.mark.parametrize(
    ("completion", "answer", "correct"),
    [
        # correct, in many styles
        ("Janet sells 16 - 3 - 4 = 9 eggs.\nShe makes 9 * 2 = $18.\nFinal answer: 18", "18", True),
        ("She sells 9 eggs at $2 each, so 9 x 2 = 18.\n\nFinal answer: $18", "18", True),
        ("9 eggs * $2 = $18\nFinal answer: $18.00", "18", True),
        ("**Final answer:** 18", "18", True),
        ("**Final Answer**: $\\boxed{18}$", "18", True),
        ("Final answer: 18 dollars", "18", True),
        ("Final answer: She makes $18 every day.", "18", True),
        ("Final answer: 9 * 2 = 18", "18", True),
        ("Final answer: 18.", "18", True),
        ("Final answer: 18\n\nQuestion: Tom has 3 apples. How many?\nSolution: 3", "18", True),
        ("Final answer: 17\nWait, I made a mistake. Final answer: 18", "18", True),
        ("Step 1: 16-3-4=9\nStep 2: 9*2=18\nThe final answer is 18.", "18", True),
        ("So Janet makes \\boxed{18} dollars.", "18", True),  # fall-back: no marker at all
        ("Therefore, the answer is $18.", "18", True),  # fall-back: no marker at all
        # wrong but close: must be judged wrong
        ("16 - 3 = 13 eggs left. 13 * 2 = 26.\nFinal answer: 26", "26", False),
        ("Final answer: 18\nActually, she eats 4. Final answer: 16", "16", False),
        ("Final answer: 1.8", "1.8", False),
        ("Final answer: 180", "180", False),
        ("Final answer: -18", "-18", False),
        ("Final answer: 18.5", "18.5", False),
        ("Final answer: 9 eggs, so $18", "9", False),  # the stated number is 9
        ("She makes 18 dollars. Final answer: 9", "9", False),
        ("\\boxed{18}\nFinal answer: 9", "9", False),  # the marker beats the box
        # unparsed: counted as wrong
        ("She makes $18 every day.", None, False),
        ("Final answer: eighteen", None, False),
        ("Final answer: 9 * 2", None, False),
        ("Final answer: $18 or $20", None, False),
        ("Janet sells 16 - 3 - 4 = 9 eggs. She makes 9 * 2 = ", None, False),  # clipped
        ("Final answer:", None, False),
        ("\\boxed{18}\nFinal answer:", "18", True),  # nothing after the marker: fall-back
        ("", None, False),
    ],
)
def test_score_janet(completion: str, answer: str | None, correct: bool) -> None:
    verdict = GSM8KTask().score(completion, JANET)
    assert (verdict.answer, verdict.correct) == (answer, correct)


@pytest.mark.parametrize(
    ("completion", "problem", "answer", "correct"),
    [
        ("Final answer: 70,000", HOUSE, "70000", True),
        ("Final answer: $70,000", HOUSE, "70000", True),
        ("Final answer: $70000.00", HOUSE, "70000", True),
        ("Final answer: 70 000", HOUSE, "70000", True),  # spaced thousands
        ("Final answer: 7,000", HOUSE, "7000", False),
        ("Final answer: 700,00", HOUSE, None, False),  # not a thousands separator: ambiguous
        ("Final answer: -7", NEGATIVE, "-7", True),
        ("Final answer: \u22127 degrees", NEGATIVE, "-7", True),
        ("Final answer: 7", NEGATIVE, "7", False),
        ("Final answer: $-7$", NEGATIVE, "-7", True),
        ("The temperature fell by 7 degrees. Final answer: 7 degrees lower", NEGATIVE, "7", False),
    ],
)
def test_score_commas_and_negatives(
    completion: str, problem: Problem, answer: str | None, correct: bool
) -> None:
    verdict = GSM8KTask().score(completion, problem)
    assert (verdict.answer, verdict.correct) == (answer, correct)


def test_strict_answer_mode_option() -> None:
    task = get_task("gsm8k", answer_mode="strict")
    assert task.score("So Janet makes \\boxed{18} dollars.", JANET).answer is None
    assert task.score("\\boxed{18}\nFinal answer:", JANET).answer is None
    with pytest.raises(IrpoError, match="answer_mode must be one of strict, flexible"):
        get_task("gsm8k", answer_mode="lenient")
    with pytest.raises(IrpoError, match="unknown option"):
        get_task("gsm8k", prompt="x")


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_load_file_and_bad_rows(tmp_path: Path) -> None:
    good = {"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}
    path = _write(
        tmp_path / "train.jsonl",
        [good, {"question": "no answer"}, {"question": "q", "answer": "no hashes"}, good],
    )
    task = GSM8KTask()
    with pytest.raises(IrpoError, match=r"train\.jsonl:2: no 'answer' field"):
        task.load(str(path), "train")
    problems, stats = task.load_with_stats(str(path), "train", skip_bad_rows=True)
    assert [p.id for p in problems] == ["train/0", "train/3"]
    assert problems[0].solution == "1+1=2" and problems[0].answer == "2"
    assert stats is not None
    assert (stats.rows, stats.loaded, stats.skipped) == (4, 2, 2)
    assert stats.skipped_reasons[1].endswith("train.jsonl:3: the 'answer' field has no '####' line")


def test_needs_a_source() -> None:
    with pytest.raises(IrpoError, match="needs a source"):
        GSM8KTask().load(None, "train")


def test_shared_data_gold_parses_everywhere(shared_data: Path) -> None:
    task = GSM8KTask()
    for split, count in (("train", 7473), ("test", 1319)):
        problems = task.load(str(shared_data / "gsm8k"), split)
        assert len(problems) == count
        failures = [p.id for p in problems if task.audit_gold(p)]
        assert failures == []
        assert not [p.id for p in problems if "," in p.answer or "<<" in (p.solution or "")]
    assert problems[0].answer == "18"  # test line 1: Janet's ducks
