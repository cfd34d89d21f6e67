from __future__ import annotations

import base64
import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from irpo.cli import app
from irpo.config import load_config
from irpo.records import write_json, write_jsonl
from irpo.report import (
    TRAINING_CAPTION,
    compare,
    replicate_groups,
    run_table,
    seed_gain,
    seed_gain_sentence,
    write_report,
)
from irpo.report_html import mark_answer, pair_sample
from irpo.rundir import RunDir


def per_question(correct: list[bool]) -> list[dict[str, object]]:
    return [
        {"problem_id": f"p{j}", "gold": "1", "greedy_correct": c} for j, c in enumerate(correct)
    ]


def fake_pairs(run: RunDir, t: int, questions: int) -> None:
    """Question j's samples: 0 correct (answer j), 1 wrong (answer j + 1), 2 unparseable and
    cut at the token limit. Its pairs: sample 0 over 2, then 0 over 1; question 0's prompt holds
    markup and its first pair is the gold solution over sample 1."""
    it = run.iteration(t)
    it.root.mkdir(parents=True, exist_ok=True)
    samples, pairs = [], []
    for j in range(questions):
        texts = [
            f"{j}+0={j}. Final answer: {j}",
            f"{j}+1={j + 1}. Final answer: {j + 1}",
            "no idea",
        ]
        answers = [str(j), str(j + 1), None]
        for i, (text, answer) in enumerate(zip(texts, answers, strict=True)):
            samples.append(
                {
                    "problem_id": f"q{j}",
                    "index": i,
                    "text": text,
                    "token_ids": [1, 2],
                    "finish_reason": "length" if answer is None else "stop",
                    "answer": answer,
                    "correct": i == 0,
                }
            )
        prompt = "What is <b>1 & 2</b>?" if j == 0 else f"What is {j}+0?"
        # question 0's first pair: gold over sample 1; the others': sample 0 over sample 2
        firsts = [(-1, "the gold: Final answer: 0", 1)] if j == 0 else [(0, texts[0], 2)]
        for chosen_index, chosen, rejected_index in [*firsts, (0, texts[0], 1)]:
            pairs.append(
                {
                    "problem_id": f"q{j}",
                    "prompt": prompt,
                    "prompt_ids": [1],
                    "chosen": chosen,
                    "chosen_ids": [1],
                    "rejected": texts[rejected_index],
                    "rejected_ids": [2],
                    "chosen_index": chosen_index,
                    "rejected_index": rejected_index,
                }
            )
    write_jsonl(it.samples, samples)
    write_jsonl(it.pairs, pairs)
    run.mark_done(f"iter_{t}/pairs", [it.pairs], pairs=len(pairs))


def fake_run(
    root: Path,
    accuracies: list[float],
    method: str = "irpo",
    *,
    correct: list[list[bool]] | None = None,
    seed: int = 0,
    questions: int = 0,
) -> RunDir:
    """A run directory with the files a run writes: evals (with per-question greedy results
    when `correct` gives them), pair statistics, training steps, and `questions` questions'
    samples and pairs per iteration."""
    run = RunDir(root)
    run.init(
        load_config(
            None,
            [f"loop.method={method}", f"loop.iterations={len(accuracies) - 1}", f"seed={seed}"],
        )
    )
    for t, acc in enumerate(accuracies):
        write_json(
            run.eval_path(t),
            {
                "greedy_accuracy": acc,
                "maj_accuracy": acc + 0.05,
                "pass_accuracy": acc + 0.2,
                "parse_failure_rate": 0.01 * t,
                "k": 8,
                "num_problems": 200,
                "per_question": per_question(correct[t]) if correct else [],
            },
        )
        if t > 0 and questions:
            fake_pairs(run, t - 1, questions)
        if t > 0:
            write_json(
                run.iteration(t - 1).pair_stats,
                {"pairs": 100 * t, "all_correct": 10 * t, "mixed": 50, "all_wrong": 40 - 10 * t},
            )
            run.mark_done(f"iter_{t - 1}/train", examples=100 * t, steps=4)
            for step in range(1, 4):
                run.log_metrics(
                    {
                        "stage": "train_step",
                        "iteration": t - 1,
                        "step": step,
                        "loss": 1.0 / step,
                        "policy_chosen_logps": -10.0 + step,
                        "policy_rejected_logps": -12.0 - step,
                        "reward_accuracy": 0.5 + 0.1 * step,
                    }
                )
    return run


def test_table_holds_the_runs_numbers(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "irpo", [0.30, 0.45, 0.52])
    rows = run_table(run)
    assert [(r.model, r.greedy, r.maj, r.pass_k, r.pairs) for r in rows] == [
        (0, 30.0, 35.0, 50.0, None),
        (1, 45.0, 50.0, 65.0, 100),
        (2, 52.0, 57.0, 72.0, 200),
    ]
    assert [r.all_wrong for r in rows] == [None, 30, 20]


def test_report_files(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "irpo", [0.30, 0.45, 0.52])
    path = write_report(run.root)
    text = path.read_text()
    assert "| seed | 30.0 | 35.0 | 50.0 | 0.0 | - |" in text
    assert "| iter 2 | 52.0 | 57.0 | 72.0 | 2.0 | 200 |" in text
    assert "| 1 | 20 | 50 | 20 | 200 |" in text
    for png in ("accuracy.png", "pairs.png", "training.png"):
        assert (run.report_dir / png).stat().st_size > 1000
    table = json.loads((run.report_dir / "table.json").read_text())
    assert [r["greedy"] for r in table] == [30.0, 45.0, 52.0]
    with (run.report_dir / "table.csv").open() as f:
        assert [row["greedy"] for row in csv.DictReader(f)] == ["30.0", "45.0", "52.0"]


def test_compare_puts_runs_side_by_side(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "irpo", [0.30, 0.45])
    b = fake_run(tmp_path / "dpo", [0.30, 0.20], method="dpo")
    path = compare([a.root, b.root], tmp_path / "cmp")
    text = path.read_text()
    assert "| irpo | irpo | iter 1 | 45.0 |" in text
    assert "| dpo | dpo | iter 1 | 20.0 |" in text
    assert (tmp_path / "cmp" / "accuracy.png").exists()


class PageParser(HTMLParser):
    """The embedded images, and the row count of each table of pairs, of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.pair_rows: list[int] = []
        self.tags: set[str] = set()
        self._in_pairs_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.images.append(a.get("src") or "")
        elif tag == "table" and a.get("class") == "pairs":
            self.pair_rows.append(0)
        elif tag == "tbody" and self.pair_rows and self.pair_rows[-1] == 0:
            self._in_pairs_body = True
        elif tag == "tr" and self._in_pairs_body:
            self.pair_rows[-1] += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_pairs_body = False


def parse_page(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def embedded_pngs(srcs: list[str]) -> list[bytes]:
    prefix = "data:image/png;base64,"
    assert all(s.startswith(prefix) for s in srcs), [s[:40] for s in srcs]
    return [base64.b64decode(s[len(prefix) :]) for s in srcs]


SEED = [True] * 3 + [False] * 7
FINAL = [True] * 7 + [False] * 3


def test_mark_answer_marks_the_last_whole_answer() -> None:
    assert (
        mark_answer("12+3=15. Final answer: 15", "15") == "12+3=15. Final answer: <mark>15</mark>"
    )
    assert mark_answer("5+10=15. Final answer: 5", "5") == "5+10=15. Final answer: <mark>5</mark>"
    assert mark_answer("a<b> & 3", "3") == "a&lt;b&gt; &amp; <mark>3</mark>"
    assert mark_answer("x<y", None) == "x&lt;y"
    assert mark_answer("no answer here", "7") == "no answer here"
    assert mark_answer("total 115", "15") == "total 1<mark>15</mark>"  # no whole match: the last


def test_pair_sample_takes_verdicts_and_answers_from_the_samples(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "irpo", [0.3, 0.4], questions=3)
    pairs = pair_sample(run.iteration(0), limit=5)
    assert [p.problem_id for p in pairs] == ["q0", "q1", "q2"]  # every question, its first pair
    q0, q1 = pairs[0], pairs[1]
    assert q0.prompt == "What is <b>1 & 2</b>?"
    assert (q0.chosen.verdict, q0.chosen.answer) == ("gold", "0")  # its "Final answer:" line
    assert (q0.rejected.verdict, q0.rejected.answer, q0.rejected.text) == (
        "wrong",
        "1",
        "0+1=1. Final answer: 1",
    )
    assert (q1.chosen.verdict, q1.chosen.answer, q1.chosen.finish_reason) == (
        "correct",
        "1",
        "stop",
    )
    assert (q1.rejected.verdict, q1.rejected.answer, q1.rejected.finish_reason) == (
        "unparseable",
        None,
        "length",
    )
    two = pair_sample(run.iteration(0), limit=2)
    assert len(two) == 2 and [p.problem_id for p in two] == sorted(p.problem_id for p in two)
    assert pair_sample(run.iteration(0), limit=2) == two  # seeded
    assert pair_sample(run.iteration(5)) == []


def test_seed_gain_is_paired_over_the_held_out_problems(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "irpo", [0.3, 0.5, 0.7], correct=[SEED, SEED, FINAL])
    gain = seed_gain(run)
    assert gain is not None
    t, d = gain
    # per problem: 4 gains, 6 ties; a resample's mean is Binomial(10, 0.4) / 10, whose 2.5 %
    # and 97.5 % points are 1/10 (P(X=0) = 0.006, P(X<=1) = 0.046) and 7/10 (P(X<=6) = 0.945,
    # P(X<=7) = 0.988); McNemar: 4 discordant problems, all one way, p = 2 / 2^4.
    assert (t, d.difference, d.low, d.high, d.a_only, d.b_only, d.p_value) == (
        2,
        pytest.approx(0.4),
        pytest.approx(0.1),
        pytest.approx(0.7),
        4,
        0,
        0.125,
    )
    assert seed_gain_sentence(run) == (
        "Greedy accuracy on the 10 held-out problems (paired bootstrap over the problems): "
        "iter 2 is 40.0 points above the seed (95 % interval +10.0 to +70.0, McNemar p = 0.12): "
        "a real difference."
    )
    assert seed_gain(fake_run(tmp_path / "no-details", [0.3, 0.5])) is None


def test_demo_prints_the_gain_with_its_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import irpo.loop

    def fake_loop(cfg: object, out: Path, **kwargs: object) -> None:
        fake_run(Path(out), [0.3, 0.5, 0.7], correct=[SEED, SEED, FINAL])

    monkeypatch.setattr(irpo.loop, "run", fake_loop)
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "| iter 2 | 70.0 |" in result.output
    assert (
        "iter 2 is 40.0 points above the seed (95 % interval +10.0 to +70.0, McNemar p = 0.12): "
        "a real difference." in result.output
    )
    report_line = f"(and {out / 'report' / 'report.html'})\n\n"
    from irpo.cli.run import demo_expectation

    assert result.output.endswith(report_line + demo_expectation() + "\n")  # the ranges, last


def test_report_html_is_one_self_contained_page(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "irpo", [0.30, 0.45, 0.52], correct=[SEED, SEED, FINAL], questions=3)
    write_report(run.root)
    path = run.report_dir / "report.html"
    text = path.read_text(encoding="utf-8")
    page = parse_page(path)
    pngs = embedded_pngs(page.images)  # accuracy, pairs, training
    assert len(pngs) == 3 and all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert not page.tags & {"script", "link", "iframe", "object"}
    assert "http://" not in text and "https://" not in text
    assert page.pair_rows == [3, 3]  # iterations 0 and 1, one pair per question
    # escaped run text, the verdicts and the marked answers
    assert "What is &lt;b&gt;1 &amp; 2&lt;/b&gt;?" in text and "<b>1 & 2</b>" not in text
    assert "<pre>0+1=1. Final answer: <mark>1</mark></pre>" in text
    for words in ("gold solution", "wrong answer", "no answer found", "cut at the token limit"):
        assert words in text
    # accuracy with binomial standard errors over 200 problems: sqrt(0.3 x 0.7 / 200) = 3.2 points
    assert "<td>30.0 &plusmn; 3.2</td><td>35.0 &plusmn; 3.4</td>" in text
    assert "iter 2 is 40.0 points above the seed" in text
    # pair statistics of iteration 0: all correct 10, mixed 50, all wrong 30, 100 pairs
    assert "<tr><td>0</td><td>-</td><td>10</td><td>50</td><td>30</td><td>-</td><td>100</td>" in text
    assert TRAINING_CAPTION == (
        "Per optimizer step, one colour per iteration: faint, every step; solid, an exponential "
        "moving average (EMA, alpha 0.1, about 10 steps)."
    )
    assert TRAINING_CAPTION in text


def test_compare_html_groups_runs_that_differ_only_in_seed(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", [0.30, 0.45], seed=0, questions=2)
    b = fake_run(tmp_path / "b", [0.40, 0.55], seed=1, questions=2)
    c = fake_run(tmp_path / "c", [0.30, 0.20], method="dpo", seed=0)
    runs = {r.root.name: r for r in (a, b, c)}
    assert replicate_groups(runs) == {"irpo, 2 seeds": ["a", "b"], "c": ["c"]}
    compare([a.root, b.root, c.root], tmp_path / "cmp")
    text = (tmp_path / "cmp" / "report.html").read_text(encoding="utf-8")
    # mean and standard error over the two seeds: (30, 40) -> 35.0 +- 5.0; maj (35, 45)
    assert (
        '<tr><td class="text">a, b</td><td class="text">irpo</td><td class="text">seed</td>'
        "<td>2</td><td>35.0 &plusmn; 5.0</td><td>40.0 &plusmn; 5.0</td></tr>" in text
    )
    assert '<td class="text">iter 1</td><td>2</td><td>50.0 &plusmn; 5.0</td>' in text
    page = parse_page(tmp_path / "cmp" / "report.html")
    # the accuracy plot, then each run's pair statistics and training curves; only a and b
    # have pairs files to show
    assert len(embedded_pngs(page.images)) == 1 + 3 * 2
    assert page.pair_rows == [2, 2]
    assert (tmp_path / "cmp" / "COMPARE.md").read_text().startswith("# Comparison")


def test_both_answer_modes_are_columns(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "irpo", [0.30, 0.45])
    ev = json.loads(run.eval_path(1).read_text())
    ev["modes"] = {
        "strict": {"greedy_accuracy": 0.25, "parse_failure_rate": 0.5},
        "flexible": {"greedy_accuracy": 0.45, "parse_failure_rate": 0.1},
    }
    write_json(run.eval_path(1), ev)
    rows = run_table(run)
    assert [(r.strict_greedy, r.flexible_greedy) for r in rows] == [(None, None), (25.0, 45.0)]
    text = write_report(run.root).read_text()
    assert "| parse fail % | trained on | strict greedy % | flexible greedy % |" in text
    assert "| iter 1 | 45.0 | 50.0 | 65.0 | 1.0 | 100 | 25.0 | 45.0 |" in text
