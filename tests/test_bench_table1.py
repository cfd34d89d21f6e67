"""bench/table1.py's tables, on synthetic results computed by hand."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from irpo.records import write_json
from tests.bench_scripts import load_bench


@pytest.fixture(scope="module")
def t1() -> ModuleType:
    return load_bench("table1")


# Two problems, three seeds. IRPO after iteration 1 gets (1, 0), (0, 1), (1, 1) greedy: 50, 50 and
# 100 %, mean 66.7, sd sqrt((16.7^2 + 16.7^2 + 33.3^2) / 2) = 28.9, s.e. 28.9 / sqrt(3) = 16.7.
# STaR gets every problem wrong greedy: on each problem the mean difference over seeds is -2/3,
# so every bootstrap resample's mean is -66.7 and the interval is a point. By majority STaR gets
# both right from every seed and IRPO's maj equals its greedy: +1/3 on each problem.
IRPO_1 = [(True, False), (False, True), (True, True)]
STAR_1 = [(False, False)] * 3


def cells(t1: ModuleType) -> list[Any]:
    out = []
    for seed in range(3):
        for variant, greedy, maj in (
            ("irpo", IRPO_1[seed], IRPO_1[seed]),
            ("star", STAR_1[seed], (True, True)),
        ):
            out.append(
                t1.Cell("constant", seed, variant, 0, ("a", "b"), (True, False), (True, False), 4)
            )
            out.append(t1.Cell("constant", seed, variant, 1, ("a", "b"), greedy, maj, 4))
    return out


def test_accuracy_table_is_mean_and_se_over_seeds(t1: ModuleType) -> None:
    assert t1.accuracy_table(cells(t1)).splitlines() == [
        "Greedy accuracy (%) on 2 held-out problems, mean ± standard error over 3 seed models "
        "(seeds 0, 1, 2); the last column maj@4.",
        "",
        "| method | seed | iter 1 | iter 1 maj@4 |",
        "|---|---|---|---|",
        "| STaR | 50.0 ± 0.0 | 0.0 ± 0.0 | 100.0 ± 0.0 |",
        "| IRPO | 50.0 ± 0.0 | 66.7 ± 16.7 | 66.7 ± 16.7 |",
    ]


def test_paired_differences_against_irpo(t1: ModuleType) -> None:
    g = t1.paired_against_reference(cells(t1), "star", 1, "greedy")
    assert (g.difference, g.low, g.high) == (
        pytest.approx(-2 / 3),
        pytest.approx(-2 / 3),
        pytest.approx(-2 / 3),
    )
    assert (g.a_only, g.b_only, g.p_value, g.seeds, g.problems) == (0, 4, 2 / 16, 3, 2)
    m = t1.paired_against_reference(cells(t1), "star", 1, "maj")
    assert (m.difference, m.low, m.high, m.a_only, m.b_only, m.p_value) == (
        pytest.approx(1 / 3),
        pytest.approx(1 / 3),
        pytest.approx(1 / 3),
        2,
        0,
        0.5,
    )
    assert t1.differences_table(cells(t1)).splitlines() == [
        "Each method minus IRPO on the same problems, in points, pooled over the seeds (95 % "
        "paired-bootstrap interval over problems; McNemar's exact test on the pooled pairs). A "
        "difference is real when its interval excludes 0.",
        "",
        "| method | model | greedy | 95 % interval | McNemar p | maj@4 | 95 % interval | "
        "McNemar p | reading |",
        "|---|---|---|---|---|---|---|---|---|",
        "| STaR | iter 1 | -66.7 | -66.7 to -66.7 | 0.12 | +33.3 | +33.3 to +33.3 | 0.5 | "
        "greedy: IRPO ahead; maj@4: STaR ahead |",
        "",
        "- iter 1, greedy: STaR is 66.7 points below IRPO (95 % interval -66.7 to -66.7, McNemar "
        "p = 0.12): a real difference.",
    ]


def test_noise_is_called_noise_and_missing_seeds_are_left_out(t1: ModuleType) -> None:
    same = [
        t1.Cell("cosine", s, v, 1, ("a", "b"), (True, False), None, 0)
        for s in (0, 1)
        for v in ("irpo", "dpo")
    ]
    extra = t1.Cell("cosine", 2, "dpo", 1, ("a", "b"), (True, True), None, 0)  # no IRPO seed 2
    d = t1.paired_against_reference([*same, extra], "dpo", 1, "greedy")
    assert (d.difference, d.low, d.high, d.seeds, d.p_value) == (0.0, 0.0, 0.0, 2, 1.0)
    table = t1.schedule_tables([*same, extra], "cosine")
    assert "| DPO | iter 1 | +0.0 | +0.0 to +0.0 | 1 | greedy: noise |" in table
    assert "| DPO | 66.7 ± 16.7 |" in table  # 50, 50, 100 over its three seeds
    assert t1.schedule_tables(same, "constant") == ""


def test_cells_and_raw_rows_come_from_the_eval_files(t1: ModuleType, tmp_path: Path) -> None:
    from irpo.config import load_config
    from irpo.rundir import RunDir

    run = RunDir(tmp_path / "constant-s1-star")
    run.init(load_config(None, ["loop.iterations=1", "seed=1"]))
    for t, flags in enumerate([(True, False, False), (True, True, False)]):
        per_question = [
            {"problem_id": f"p{j}", "greedy_correct": f, "maj_correct": not f}
            for j, f in enumerate(flags)
        ]
        write_json(run.eval_path(t), {"k": 4, "per_question": per_question})
    got = t1.read_cells(run, "constant", 1, "star")
    assert [(c.model, c.problems, c.greedy, c.maj, c.k) for c in got] == [
        (0, ("p0", "p1", "p2"), (True, False, False), (False, True, True), 4),
        (1, ("p0", "p1", "p2"), (True, True, False), (False, False, True), 4),
    ]
    rows = t1.raw_rows(got, {"constant-s1-star": 12.34})
    assert rows[1] == {
        "schedule": "constant",
        "seed": 1,
        "method": "star",
        "model": 1,
        "greedy": 66.67,
        "maj": 33.33,
        "k": 4,
        "problems": 3,
        "run_seconds": 12.3,
    }
    t1.write_raw(rows, tmp_path / "results" / "table1")
    assert json.loads((tmp_path / "results" / "table1.json").read_text()) == rows
    csv_lines = (tmp_path / "results" / "table1.csv").read_text().splitlines()
    assert csv_lines[0] == "schedule,seed,method,model,greedy,maj,k,problems,run_seconds"
    assert csv_lines[2] == "constant,1,star,1,66.67,33.33,4,3,12.3"


def test_every_run_gets_the_experiments_settings(t1: ModuleType) -> None:
    args = t1.parse_args(["--out", "x"])
    assert (args.seeds, args.iterations, args.eval_limit, args.doc) == (
        [0, 1, 2],
        3,
        1000,
        Path("docs/RESULTS.md"),
    )
    assert args.methods == ["sft_gold", "star", "dpo", "irpo", "irpo_gold"]
    assert args.schedules == ["constant", "cosine"]
    overrides = t1.run_overrides(args, "cosine", 2, "irpo_gold")
    assert overrides == [
        "task.options.size=5000",
        "task.eval_limit=1000",
        "seed=2",
        "seed_model.schedule=cosine",
        "loop.iterations=3",
        "loop.method=irpo",
        "pairs.gold_as_winner=always",
    ]
    from irpo.config import demo_config_path, load_config

    cfg = load_config(demo_config_path(), overrides)
    assert (cfg.seed, cfg.task.eval_limit, cfg.pairs.gold_as_winner) == (2, 1000, "always")
    smoke = t1.parse_args(["--out", "y", "--smoke"])
    assert (smoke.iterations, smoke.eval_limit, smoke.doc) == (1, 40, Path("y/RESULTS.md"))
    assert t1.command_line(smoke) == (
        "python bench/table1.py --out y --smoke --seeds 0 1 --schedules constant cosine "
        "--iterations 1 --eval-limit 40"
    )


def test_run_seconds_accumulate_over_invocations(t1: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "out" / "timings.json"
    first = t1.Timings(path)
    first.add("constant-s0-irpo", 100.0)
    first.add(t1.Timings.OTHER, 5.0)
    again = t1.Timings(path)  # a re-run: the finished run takes a moment to be seen as such
    again.add("constant-s0-irpo", 0.5)
    again.add("constant-s0-star", 80.0)
    again.add(t1.Timings.OTHER, 2.0)
    assert json.loads(path.read_text()) == {
        "constant-s0-irpo": 100.5,
        "_other": 7.0,
        "constant-s0-star": 80.0,
    }
    assert t1.Timings(path).total() == 187.5
