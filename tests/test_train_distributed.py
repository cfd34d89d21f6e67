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
from irpo.train import TrainResult, train_preference

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


SETTINGS = {
    "learning_rate": 0.01,
    "batch_size": 8,
    "micro_batch_size": 2,
    "max_steps": 4,
    "schedule": "linear",
    "warmup_steps": 1,
}  # mixed_precision "auto" is full precision on CPUs


def _one_process(tmp_path: Path) -> tuple[Path, Path, TrainResult]:
    """A tiny model, 16 pairs, and their training in this interpreter: 4 micro-batches of 2
    per step. Returns the model folder, the pairs file and the result."""
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
    one = train_preference(str(model_dir), pairs, TrainConfig(**SETTINGS), tmp_path / "one", seed=0)
    return model_dir, pairs_file, one


def _train_args(pairs_file: Path, model_dir: Path, out: Path) -> list[str]:
    args = ["train", str(pairs_file), "--model", str(model_dir), "--out", str(out)]
    args += ["--method", "irpo"]
    for key, value in SETTINGS.items():
        args += ["--set", f"train.{key}={value}"]
    return args


CPU_ENV = {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _assert_trains_like(one: TrainResult, out: Path, processes: int) -> None:
    """The training in `out` took the 1-process steps and weights (to 1e-5)."""
    assert json.loads((out / "result.json").read_text())["num_processes"] == processes
    rows_one = list(read_jsonl(one.model_dir.parent / "train_log.jsonl"))
    rows_two = list(read_jsonl(out / "train_log.jsonl"))
    assert [r["step"] for r in rows_two] == [1, 2, 3, 4]
    for a, b in zip(rows_one, rows_two, strict=True):
        for key in ("loss", "dpo", "nll", "margin", "policy_chosen_logps", "lr", "grad_norm"):
            assert b[key] == pytest.approx(a[key], abs=1e-5, rel=1e-5), (a["step"], key)
    w_one = load_file(str(one.model_dir / "model.safetensors"))
    w_two = load_file(str(out / "model" / "model.safetensors"))
    assert w_one.keys() == w_two.keys()
    assert max((w_one[k] - w_two[k]).abs().max().item() for k in w_one) < 1e-5
    assert torch.equal(
        torch.tensor([r["index"] for r in read_jsonl(out / "reference_logps.jsonl")]),
        torch.arange(16),
    )


def test_two_processes_match_one_process(tmp_path: Path) -> None:
    model_dir, pairs_file, one = _one_process(tmp_path)

    # Two processes through the CLI: 2 micro-batches of 2 per process per step. `accelerate
    # launch --multi_gpu` starts its processes with torch.distributed.run; on CPUs it wants MPI,
    # so start them the same way directly, with accelerate's CPU flag (gloo process group).
    irpo = Path(sys.executable).parent / "irpo"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
        str(irpo), *_train_args(pairs_file, model_dir, tmp_path / "two"),
    ]  # fmt: skip
    env = {**os.environ, **CPU_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model:" in proc.stdout
    _assert_trains_like(one, tmp_path / "two", 2)


# Starts its command once per "machine" of this one, as `srun --ntasks-per-node=1` does on a
# cluster, with the machine's rank in SLURM_NODEID; fails when either copy fails.
TWO_NODES = [
    "bash", "-c",
    'for r in 0 1; do SLURM_NODEID=$r "$@" & done; s=0; '
    "for j in $(jobs -p); do wait $j || s=1; done; exit $s",
    "two-nodes",
]  # fmt: skip


def test_two_machines_of_one_process_match_one_process(tmp_path: Path) -> None:
    """The driver's command for training on several machines (`launch.machines: 2`): on each
    "machine" torchrun --nnodes 2 --node-rank $SLURM_NODEID with one gloo process, meeting
    on loopback."""
    from irpo.launch import LaunchPlan, machines_command

    model_dir, pairs_file, one = _one_process(tmp_path)
    plan = LaunchPlan(gpus=0, sampling_workers=1, tensor_parallel_size=1, train_processes=1,
                      accelerate_config=None, machines=2, node_launcher=tuple(TWO_NODES),
                      main_process_ip="127.0.0.1", main_process_port=_free_port())  # fmt: skip
    cmd = machines_command(plan, _train_args(pairs_file, model_dir, tmp_path / "two-nodes"))
    assert cmd[: len(TWO_NODES)] == TWO_NODES
    env = {**os.environ, **CPU_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_trains_like(one, tmp_path / "two-nodes", 2)
