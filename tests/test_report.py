from __future__ import annotations

import csv
import json
from pathlib import Path

from irpo.config import load_config
from irpo.records import write_json
from irpo.report import compare, run_table, write_report
from irpo.rundir import RunDir


def fake_run(root: Path, accuracies: list[float], method: str = "irpo") -> RunDir:
    run = RunDir(root)
    run.init(load_config(None, [f"loop.method={method}", f"loop.iterations={len(accuracies) - 1}"]))
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
                "per_question": [],
            },
        )
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
