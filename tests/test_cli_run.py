"""`irpo run`, `irpo demo`, `irpo report`, `irpo compare` and `irpo pairs` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from irpo.cli import app
from irpo.rundir import RunDir

from .test_loop import TINY, tiny_config

runner = CliRunner()


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path_factory.getbasetemp() / "irpo-cache"))


def test_run_prints_the_table_and_writes_the_report(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config("loop.iterations=1").model_dump(mode="json")))
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    greedy = json.loads(RunDir(out).eval_path(1).read_text())["greedy_accuracy"]
    assert f"| iter 1 | {100 * greedy:.1f} |" in result.output
    assert (out / "report" / "REPORT.md").exists()

    again = runner.invoke(app, ["run", str(config), "-o", str(out), "--set", "train.beta=0.3"])
    assert again.exit_code == 2
    assert "train.beta: 0.1 -> 0.3" in again.output

    report = runner.invoke(app, ["report", str(out)])
    assert report.exit_code == 0 and report.output.strip().endswith("REPORT.md")

    cmp = runner.invoke(app, ["compare", str(out), str(out), "-o", str(tmp_path / "cmp")])
    assert cmp.exit_code == 0 and "| run | method |" in cmp.output


def test_demo_runs_the_embedded_config_with_overrides(tmp_path: Path) -> None:
    demo_cfg = yaml.safe_load(
        (Path(__file__).parents[1] / "src" / "irpo" / "configs" / "demo.yaml").read_text()
    )
    assert demo_cfg["task"]["name"] == "arith" and demo_cfg["model"]["name_or_path"] == "scratch"
    tiny = [*TINY, "loop.iterations=1", "pairs.gold_as_winner=if_no_correct"]
    sets = [arg for item in tiny for arg in ("--set", item)]
    result = runner.invoke(app, ["demo", "-o", str(tmp_path / "demo"), *sets])
    assert result.exit_code == 0, result.output
    assert RunDir(tmp_path / "demo").is_done("eval_1")
    assert "Expected at this setting" not in result.output  # the ranges are for its own setting


def test_pairs_command_rebuilds_a_runs_pairs(tmp_path: Path) -> None:
    from irpo.loop import run

    out = tmp_path / "run"
    cfg = tiny_config("loop.iterations=1")
    run(cfg, out)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    it = RunDir(out).iteration(0)
    result = runner.invoke(
        app,
        [
            "pairs",
            str(it.samples),
            "--model",
            str(RunDir(out).seed_dir),
            "-o",
            str(tmp_path / "p"),
            "--config",
            str(config),
        ],
    )
    assert result.exit_code == 0, result.output
    # Same pairs as the run made (the run's pairs also carry reference log-probs).
    ours = [json.loads(line) for line in (tmp_path / "p" / "pairs.jsonl").open()]
    theirs = [json.loads(line) for line in it.pairs.open()]
    strip = ("ref_chosen_logp", "ref_rejected_logp")
    assert all(p["ref_chosen_logp"] is None for p in ours)
    assert [{k: v for k, v in p.items() if k not in strip} for p in theirs] == [
        {k: v for k, v in p.items() if k not in strip} for p in ours
    ]
    assert (tmp_path / "p" / "preference.jsonl").exists()


def test_bad_config_is_one_line_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("sampling:\n  temprature: 1\n")
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 2
    assert "sampling.temprature: unknown key" in result.output
    assert "Traceback" not in result.output


def test_the_demos_expected_ranges_are_those_of_the_committed_results() -> None:
    import json
    import math

    from irpo.cli.run import DEMO_RANGES, demo_expectation

    docs = Path(__file__).parents[1] / "docs" / "results"
    table1 = json.loads((docs / "table1.json").read_text(encoding="utf-8"))
    conditions = json.loads((docs / "conditions.json").read_text(encoding="utf-8"))
    runs: dict[tuple[str, int], dict[int, float]] = {}
    for r in table1:
        if r["schedule"] == "constant" and r["method"] == "irpo":
            runs.setdefault(("table1", r["seed"]), {})[r["model"]] = r["greedy"]
    for r in conditions:
        if r["condition"] == "base" and r["method"] == "irpo":
            runs.setdefault(("conditions", r["seed"]), {})[r["model"]] = r["greedy"]
    assert len(runs) == 6
    observed = {
        "seed": [m[0] for m in runs.values()],
        "round_1": [m[1] - m[0] for m in runs.values()],
        "round_3": [m[3] - m[0] for m in runs.values() if 3 in m],
    }
    assert len(observed["round_3"]) == 3
    for key, values in observed.items():
        assert DEMO_RANGES[key] == (math.floor(min(values)), math.ceil(max(values))), key
    lo, hi = DEMO_RANGES["seed"]
    assert f"a seed at {lo}-{hi} % greedy" in demo_expectation()
