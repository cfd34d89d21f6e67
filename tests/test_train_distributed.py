"""Two CPU processes (gloo) train like one with the same global batch.

Runs the installed `irpo` entry point in each process, as `accelerate launch ... irpo train` does.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from irpo.config import TrainConfig
from irpo.models import build_char_tokenizer, build_llama, save_model
from irpo.records import Pair, read_jsonl, write_jsonl
from irpo.train import train_preference

pytestmark = pytest.mark.slow


def _pairs(tokenizer: object, n: int) -> list[Pair]:
    def enc(text: str) -> list[int]:
        return [*tokenizer(text, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]  # type: ignore[operator, attr-defined]

    return [
        Pair(
            problem_id=str(a),
            prompt=f"{a}*2=",
            prompt_ids=tokenizer(f"{a}*2=")["input_ids"],  # type: ignore[operator]
            chosen=str(2 * a),
            chosen_ids=enc(str(2 * a)),
            rejected=str(2 * a + 1 + a % 4),
            rejected_ids=enc(str(2 * a + 1 + a % 4) + "!" * (a % 3)),
            chosen_index=0,
            rejected_index=1,
        )
        for a in range(n)
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_match_one_process(tmp_path: Path) -> None:
    tokenizer = build_char_tokenizer()
    model_dir = tmp_path / "m0"
    save_model(
        build_llama(tokenizer, hidden_size=32, num_layers=2, num_heads=2, seed=0),
        tokenizer,
        model_dir,
    )
    pairs = _pairs(tokenizer, 16)
    pairs_file = tmp_path / "pairs.jsonl"
    write_jsonl(pairs_file, (p.to_dict() for p in pairs))
    settings = {
        "learning_rate": 0.01,
        "batch_size": 8,
        "micro_batch_size": 2,
        "max_steps": 4,
        "schedule": "linear",
        "warmup_steps": 1,
    }  # mixed_precision "auto" is full precision on CPUs

    # One process, in this interpreter: 4 micro-batches of 2 per step.
    one = train_preference(str(model_dir), pairs, TrainConfig(**settings), tmp_path / "one", seed=0)

    # Two processes through the CLI: 2 micro-batches of 2 per process per step. `accelerate
    # launch --multi_gpu` starts its processes with torch.distributed.run; on CPUs it wants MPI,
    # so start them the same way directly, with accelerate's CPU flag (gloo process group).
    irpo = Path(sys.executable).parent / "irpo"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(irpo), "train", str(pairs_file), "--model", str(model_dir), "--out", str(tmp_path / "two"),
        "--method", "irpo",
    ]  # fmt: skip
    for key, value in settings.items():
        cmd += ["--set", f"train.{key}={value}"]
    env = {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model:" in proc.stdout
    assert json.loads((tmp_path / "two" / "result.json").read_text())["num_processes"] == 2

    rows_one = list(read_jsonl(tmp_path / "one" / "train_log.jsonl"))
    rows_two = list(read_jsonl(tmp_path / "two" / "train_log.jsonl"))
    assert [r["step"] for r in rows_two] == [1, 2, 3, 4]
    for a, b in zip(rows_one, rows_two, strict=True):
        for key in ("loss", "dpo", "nll", "margin", "policy_chosen_logps", "lr", "grad_norm"):
            assert b[key] == pytest.approx(a[key], abs=1e-5, rel=1e-5), (a["step"], key)
    w_one = load_file(str(one.model_dir / "model.safetensors"))
    w_two = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert w_one.keys() == w_two.keys()
    assert max((w_one[k] - w_two[k]).abs().max().item() for k in w_one) < 1e-5
    assert torch.equal(
        torch.tensor([r["index"] for r in read_jsonl(tmp_path / "two" / "reference_logps.jsonl")]),
        torch.arange(16),
    )
