"""bench/table1_map.py: which run stands for each method under a condition, and its table, on
synthetic results computed by hand."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.bench_scripts import load_bench


@pytest.fixture(scope="module")
def tm() -> ModuleType:
    return load_bench("table1_map")


def test_a_baseline_runs_only_where_the_condition_changes_it(tm: ModuleType) -> None:
    by = tm.BY_NAME
    assert [tm.source(by["k1"], m) for m in tm.METHODS] == ["k1", "base", "base"]
    assert [tm.source(by["n16"], m) for m in tm.METHODS] == ["n16", "base", "n16"]
    assert [tm.source(by["lr1e-4"], m) for m in tm.METHODS] == ["lr1e-4", "lr1e-4", "base"]
    assert [tm.source(by["harder"], m) for m in tm.METHODS] == ["harder"] * 3
    assert [tm.source(by["steps"], m) for m in tm.METHODS] == ["steps", "base", "steps"]
    assert [tm.source(by["steps_n16"], m) for m in tm.METHODS] == ["steps_n16", "base", "steps_n16"]


def test_arguments_keep_the_base_condition_and_the_results_setting(tm: ModuleType) -> None:
    args = tm.parse_args(["--conditions", "k1", "--set", "task.train_limit=100"])
    assert args.conditions == ["base", "k1"]
    assert args.overrides == ["task.train_limit=400", "task.train_limit=100"]  # the last wins
    assert (args.seeds, args.eval_limit, args.iterations) == ([0, 1, 2], 1000, 1)


def cell(tm: ModuleType, cond: str, seed: int, method: str, model: int, greedy: Any) -> Any:
    return tm.Cell(cond, seed, tm.cell_name(cond, method), model, ("a", "b"), greedy, greedy, 4)


def test_map_table_by_hand(tm: ModuleType) -> None:
    # Two seeds, two problems. Seed model: (1, 0) from both seeds: 50 %. After one iteration at
    # base: IRPO (1, 1) from both (100 %), SFT on gold (1, 0) (50 %), STaR (0, 0) (0 %); under
    # k1, IRPO (1, 0) from seed 0 and (1, 1) from seed 1 (75 ± 25), against base's baselines.
    # IRPO - SFT on gold at base: +50 points (problem a: 0, b: +1 from
    # both seeds: means 0 and 1; a draw of (a, a) gives 0, of (b, b) +100: the interval is
    # 0 to +100, noise).
    cells = []
    for s in (0, 1):
        for m in tm.METHODS:
            cells.append(cell(tm, "base", s, m, 0, (True, False)))
        cells.append(cell(tm, "base", s, "irpo", 1, (True, True)))
        cells.append(cell(tm, "base", s, "sft_gold", 1, (True, False)))
        cells.append(cell(tm, "base", s, "star", 1, (False, False)))
        cells.append(cell(tm, "k1", s, "irpo", 0, (True, False)))
        cells.append(cell(tm, "k1", s, "irpo", 1, (True, s == 1)))
        cells.append(cell(tm, "k1", s, "sft_gold", 1, (True, False)))  # base's run, re-read
        cells.append(cell(tm, "k1", s, "star", 1, (False, False)))
    lines = tm.map_table(cells, [tm.BY_NAME["base"], tm.BY_NAME["k1"], tm.BY_NAME["n16"]])
    rows = [line.split(" | ") for line in lines.splitlines()[2:]]
    assert len(rows) == 2  # n16 has no results: no row
    base, k1 = rows
    assert base[1:6] == ["2", "50.0 ± 0.0", "100.0 ± 0.0", "50.0 ± 0.0", "0.0 ± 0.0"]
    assert base[6] == "+50.0 (+0.0 to +100.0; p 0.5, noise)"  # the interval touches 0
    assert base[8] == "+100.0 (+100.0 to +100.0; p 0.12)"  # STaR: 4 discordant, 2 x 1/16
    assert base[-1] == "- |"
    assert k1[1:6] == ["2", "50.0 ± 0.0", "75.0 ± 25.0", "50.0 ± 0.0", "0.0 ± 0.0"]
    # k1 IRPO - base IRPO: problem b, seed 0 only: -25 points; one discordant pair: p 1.
    assert k1[-1].startswith("-25.0 (") and k1[-1].endswith("; p 1, noise) |")
    assert lines.splitlines()[0].startswith("| condition | seeds | seed model | IRPO iter 1 |")


def test_a_new_run_gets_the_seed_models_evaluation_samples(tm: ModuleType, tmp_path: Path) -> None:
    donor = tmp_path / "base-s0-irpo"
    (donor / "evals").mkdir(parents=True)
    names = [
        "model_0.greedy.jsonl",
        "model_0.greedy.settings.json",
        "model_0.sampled.jsonl",
        "model_0.sampled.settings.json",
    ]
    for name in names:
        (donor / "evals" / name).write_text(name, encoding="utf-8")
    new = tmp_path / "k1-s0-irpo"
    assert tm.share_seed_eval(new, donor)
    assert sorted(p.name for p in (new / "evals").iterdir()) == sorted(names)
    assert (new / "evals" / "model_0.sampled.jsonl").read_text(encoding="utf-8") == (
        "model_0.sampled.jsonl"
    )
    assert not tm.share_seed_eval(new, donor)  # an existing run keeps what it has
    assert not tm.share_seed_eval(donor, donor)
    (donor / "evals" / "model_0.sampled.settings.json").unlink()
    assert not tm.share_seed_eval(tmp_path / "k1-s1-irpo", donor)  # incomplete: nothing
    assert not (tmp_path / "k1-s1-irpo").exists()
