"""Training step time and peak memory: irpo's preference trainer against TRL's DPOTrainer, on CPU.

Rows, each run in its own subprocess so that its peak RSS (getrusage ru_maxrss) is its own:
  irpo            irpo.train.train_preference; the reference log-probs (M_t) are computed once
                  beforehand with the same model, which is then freed: one model in training memory.
  irpo-gc         the same with TrainConfig.gradient_checkpointing=True.
  trl             TRL DPOTrainer, loss_type=["sigmoid", "sft"] (its IRPO-like objective; its NLL
                  is a batch token mean), with its defaults: a resident reference model and
                  gradient checkpointing (TRL's configs default to gradient_checkpointing=True,
                  which the Trainer applies in train(), on CPU too). The row sets it explicitly.
  trl-nogc        the same with gradient_checkpointing=False.
  trl-precompute  trl with precompute_ref_log_probs=True (no reference model while training).
  irpo-bf16, irpo-gc-bf16
                  irpo and irpo-gc with bf16 autocast over float32 master weights (what
                  `train.mixed_precision: auto` picks on CPUs where bf16 matmuls measure faster);
                  reference log-probs in float32.

Held equal: the model (SmolLM2-135M-Instruct, float32, CPU), the pairs, the batch (4 pairs per
optimizer step, no accumulation), AdamW at a constant learning rate with gradient clipping 1.0,
beta 0.1, NLL weight 1, one torch thread. The pairs are GSM8K train questions with the paper's
prompt in the model's chat template; chosen = the gold solution ("Final answer: X"), rejected = the
same solution with the final answer changed to a wrong number everywhere it appears. They are the
questions whose gold solution length is closest to the median, so that how a trainer groups pairs
into batches barely changes padding. Each row runs `--warmup` + `--steps` optimizer steps; the step
time is the mean wall time between the ends of consecutive timed steps (forward, backward,
optimizer step, logging), so model loading, data preparation and saving are not in it.

Commands:
    flock /tmp/irpo-cpu.lock .venv/bin/python bench/bench_train.py --write docs/BENCHMARKS.md
    flock /tmp/irpo-cpu.lock .venv/bin/python bench/bench_train.py --rows irpo-gc,trl-nogc
    .venv/bin/python bench/bench_train.py --smoke   # a tiny random model: checks the plumbing
--write replaces the whole section with the rows of this run ("vs trl" needs the trl row in it).
TRL is a bench-only dependency: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("IRPO_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass(frozen=True)
class Row:
    trainer: str  # "irpo" or "trl"
    checkpointing: bool  # gradient (activation) checkpointing
    precompute: bool  # reference log-probs computed before training (irpo always does)
    reference: str  # how the reference log-probs are had, for the table
    precision: str = "no"  # accelerate's mixed precision of the trained model ("bf16": autocast)


ROW_SPECS = {
    "irpo": Row("irpo", False, True, "precomputed (load + pass {reference_s:.1f} s)"),
    "irpo-gc": Row("irpo", True, True, "precomputed (load + pass {reference_s:.1f} s)"),
    "irpo-bf16": Row("irpo", False, True, "precomputed (load + pass {reference_s:.1f} s)", "bf16"),
    "irpo-gc-bf16": Row(
        "irpo", True, True, "precomputed (load + pass {reference_s:.1f} s)", "bf16"
    ),
    "trl": Row("trl", True, False, "resident model"),
    "trl-nogc": Row("trl", False, False, "resident model"),
    "trl-precompute": Row("trl", True, True, "precomputed (in setup)"),
}
ROWS = tuple(ROW_SPECS)
SECTION = "## Training step"
GSM8K_PROMPT = (
    "Your task is to answer the question below. Give step by step reasoning before you answer, "
    'and when you\'re ready to answer, please use the format "Final answer: ..."\n\n'
    "Question: {question}\n\nSolution:"
)


@dataclass
class Settings:
    model: str
    pairs: int
    batch: int
    warmup: int
    steps: int
    beta: float = 0.1
    alpha: float = 1.0
    learning_rate: float = 7e-7
    ref_batch_size: int = 8


# --------------------------------------------------------------------------- the pairs


def gsm8k_pairs(tokenizer: Any, n: int, pool: int = 1000) -> list[dict[str, Any]]:
    """`n` GSM8K train questions with gold and corrupted solutions, lengths nearest the median."""

    rows = []
    with (SHARED_DATA / "gsm8k" / "train.jsonl").open(encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == pool:
                break
    rng = random.Random(0)
    candidates = []
    for i, row in enumerate(rows):
        body, _, answer = row["answer"].rpartition("####")
        answer = answer.strip().replace(",", "")
        body = re.sub(r"<<[^>]*>>", "", body).strip()  # GSM8K calculator annotations
        chosen = f"{body}\nFinal answer: {answer}"
        wrong = str(int(float(answer)) + rng.randint(1, 9)) if _is_number(answer) else answer + "0"
        rejected = re.sub(rf"(?<![\d.]){re.escape(answer)}(?![\d.])", wrong, chosen)
        prompt = GSM8K_PROMPT.format(question=row["question"])
        candidates.append(_pair_row(tokenizer, f"gsm8k-train-{i}", prompt, chosen, rejected))
    median = statistics.median(len(c["chosen_ids"]) for c in candidates)
    candidates.sort(key=lambda c: (abs(len(c["chosen_ids"]) - median), c["problem_id"]))
    return candidates[:n]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _pair_row(tokenizer: Any, problem_id: str, prompt: str, chosen: str, rejected: str) -> dict:
    """A pairs-file row (a gold winner, index -1) with the prompt and responses tokenised."""
    from irpo.models import encode_prompt, encode_response

    text, prompt_ids = encode_prompt(tokenizer, prompt)
    return {
        "problem_id": problem_id,
        "prompt": text,
        "prompt_ids": prompt_ids,
        "chosen": chosen,
        "chosen_ids": encode_response(tokenizer, chosen),
        "rejected": rejected,
        "rejected_ids": encode_response(tokenizer, rejected),
        "chosen_index": -1,
        "rejected_index": 0,
    }


def synthetic_pairs(tokenizer: Any, n: int) -> list[dict[str, Any]]:
    """Fixed arithmetic pairs for `--smoke` (no shared data needed)."""
    out = []
    for i in range(n):
        a, b = 3 + i, 5 + 2 * i
        chosen, rejected = f"{a} + {b} = {a + b}. Final answer: {a + b}", f"Final answer: {a - b}"
        out.append(_pair_row(tokenizer, f"synthetic-{i}", f"What is {a} + {b}?", chosen, rejected))
    return out


# --------------------------------------------------------------------------- the rows (workers)


def run_irpo(
    model_path: str, pairs_file: Path, s: Settings, workdir: Path, row: Row
) -> dict[str, Any]:
    import gc

    from irpo.config import ModelConfig, TrainConfig
    from irpo.models import load_model
    from irpo.records import read_pairs
    from irpo.train import compute_reference_logps, train_preference

    pairs = read_pairs(pairs_file)
    start = time.perf_counter()
    model = load_model(model_path, dtype="float32", device="cpu")
    compute_reference_logps(model, pairs, batch_size=s.ref_batch_size)
    reference_s = time.perf_counter() - start
    del model
    gc.collect()

    step_ends: list[float] = []
    cfg = TrainConfig(
        beta=s.beta,
        alpha=s.alpha,
        learning_rate=s.learning_rate,
        schedule="constant",
        batch_size=s.batch,
        micro_batch_size=s.batch,
        max_steps=s.warmup + s.steps,
        max_grad_norm=1.0,
        mixed_precision=row.precision,
        log_every=1,
        ref_batch_size=s.ref_batch_size,
        gradient_checkpointing=row.checkpointing,
    )
    train_preference(
        model_path,
        pairs,
        cfg,
        workdir / "irpo",
        seed=0,
        model_cfg=ModelConfig(name_or_path=model_path, dtype="float32", device="cpu"),
        log_fn=lambda row: step_ends.append(time.perf_counter()),
    )
    return {"step_ends": step_ends, "reference_s": reference_s}


def run_trl(
    model_path: str, pairs_file: Path, s: Settings, workdir: Path, row: Row
) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from irpo.models import load_tokenizer
    from irpo.records import read_jsonl

    step_ends: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step_ends.append(time.perf_counter())

    rows = [
        {"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]}
        for r in read_jsonl(pairs_file)
    ]
    args = DPOConfig(
        output_dir=str(workdir / "trl"),
        per_device_train_batch_size=s.batch,
        gradient_accumulation_steps=1,
        max_steps=s.warmup + s.steps,
        learning_rate=s.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch",
        max_grad_norm=1.0,
        gradient_checkpointing=row.checkpointing,
        beta=s.beta,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, s.alpha],
        max_length=None,
        precompute_ref_log_probs=row.precompute,
        precompute_ref_batch_size=s.ref_batch_size,
        model_init_kwargs={"dtype": "float32"},
        use_cpu=True,
        bf16=False,
        fp16=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    start = time.perf_counter()
    trainer = DPOTrainer(
        model=model_path,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=load_tokenizer(model_path),
        callbacks=[StepTimer()],
    )
    setup_s = time.perf_counter() - start
    trainer.train()
    if (on := trainer.model.is_activation_checkpointing) != row.checkpointing:
        raise RuntimeError(f"TRL trained with checkpointing={on}, not {row.checkpointing}")
    return {"step_ends": step_ends, "setup_s": setup_s}


def worker(row: str, model_path: str, pairs_file: Path, s: Settings, out: Path) -> None:
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    workdir = out.parent / row
    spec = ROW_SPECS[row]
    run = run_irpo if spec.trainer == "irpo" else run_trl
    result = run(model_path, pairs_file, s, workdir, spec)
    ends = result.pop("step_ends")
    if len(ends) != s.warmup + s.steps:
        raise RuntimeError(f"{row}: expected {s.warmup + s.steps} step ends, got {len(ends)}")
    timed = [b - a for a, b in zip(ends[s.warmup - 1 :], ends[s.warmup :], strict=False)]
    result.update(
        row=row,
        step_s=statistics.mean(timed),
        step_s_all=timed,
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        total_s=time.perf_counter() - start,
        threads=torch.get_num_threads(),
    )
    out.write_text(json.dumps(result))


# --------------------------------------------------------------------------- the parent


def run_row(row: str, model_path: str, pairs_file: Path, s: Settings, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{row}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.update(TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    cmd = [sys.executable, __file__, "--worker", row, "--model-path", model_path]
    cmd += ["--pairs-file", str(pairs_file), "--settings", json.dumps(asdict(s)), "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        return {"row": row, "error": tail or f"exit status {proc.returncode}"}
    return dict(json.loads(out.read_text()))


def table(results: list[dict[str, Any]]) -> str:
    base = next((r for r in results if r["row"] == "trl" and "error" not in r), None)
    lines = [
        "| row | checkpointing | compute | step time (s) | vs trl | peak RSS (MiB) | vs trl "
        "| reference log-probs | total (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            continue
        spec = ROW_SPECS[r["row"]]
        ref = spec.reference.format(reference_s=r.get("reference_s", 0.0))
        vs_step = f"{r['step_s'] / base['step_s']:.2f}x" if base else "-"
        vs_mem = f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f}x" if base else "-"
        lines.append(
            f"| {r['row']} | {'yes' if spec.checkpointing else 'no'} "
            f"| {'bf16 autocast' if spec.precision == 'bf16' else 'float32'} | {r['step_s']:.2f} "
            f"| {vs_step} | {r['peak_rss_mib']:.0f} | {vs_mem} | {ref} | {r['total_s']:.1f} |"
        )
    return "\n".join(lines)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in out.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores visible"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}"]
    for pkg in ("torch", "transformers", "trl", "accelerate"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} absent")
    return ", ".join(parts)


def timed_steps(results: list[dict[str, Any]]) -> str:
    """Every timed step of every row, so that the spread of the mean is visible."""
    return "; ".join(
        f"{r['row']} " + ", ".join(f"{x:.2f}" for x in r["step_s_all"])
        for r in results
        if "error" not in r
    )


def section(results: list[dict[str, Any]], s: Settings, pair_stats: str, command: str) -> str:
    return f"""{SECTION}

One optimizer step of IRPO training (DPO + NLL, Eq. 1) on CPU: irpo's trainer against TRL's
`DPOTrainer` with `loss_type=["sigmoid", "sft"]`. Produced by `bench/bench_train.py`; its
docstring lists what is held equal.

- Command: `{command}`
- Machine: {machine()}; torch threads = 1 (`OMP_NUM_THREADS=1`), each row in its own process.
- Versions: {versions()}.
- Model: {_model_label(s.model)}, float32. Batch: {s.batch} pairs per optimizer step,
  no accumulation; {s.warmup} warm-up step(s), then {s.steps} timed; AdamW, constant lr
  {s.learning_rate:g}, clip 1.0, beta {s.beta:g}, NLL weight {s.alpha:g}.
- Pairs: {pair_stats}.
- Step time: mean wall time between the ends of consecutive timed optimizer steps. Peak RSS:
  `getrusage(RUSAGE_SELF).ru_maxrss` of the row's process (loading, reference pass and
  training included). "vs trl" divides by the `trl` row: TRL's defaults, with its resident
  reference model and gradient checkpointing. Checkpointing: gradient (activation) checkpointing
  of the decoder layers in the trained model.

{table(results)}

Timed steps (s): {timed_steps(results)}.
"""


def _model_label(name: str) -> str:
    return f"`{name}` (SmolLM2-135M-Instruct)" if name == "smollm2-135m" else name


def write_section(doc: Path, text: str) -> None:
    """Replace this benchmark's section of `doc` (up to the next `## ` heading), or append it."""
    old = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: text + "\n", old, count=1).rstrip("\n") + "\n"
    else:
        new = old.rstrip("\n") + "\n\n" + text
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new, encoding="utf-8")


def tiny_model(path: Path) -> str:
    from irpo.models import build_char_tokenizer, build_llama, save_model

    tokenizer = build_char_tokenizer()
    save_model(build_llama(tokenizer, hidden_size=32, num_layers=2, num_heads=2), tokenizer, path)
    return str(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--pairs", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {ROWS}")
    p.add_argument("--smoke", action="store_true", help="tiny random model, synthetic pairs")
    p.add_argument("--write", type=Path, help=f"replace the {SECTION!r} section of this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--model-path", help=argparse.SUPPRESS)
    p.add_argument("--pairs-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--settings", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()

    if a.worker:
        worker(a.worker, a.model_path, a.pairs_file, Settings(**json.loads(a.settings)), a.out)
        return
    if a.warmup < 1 or a.steps < 1:
        p.error("--warmup and --steps must be >= 1 (the first step end starts the clock)")
    if a.write and a.smoke:
        p.error("--write is for real measurements, not --smoke")
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    if unknown := set(rows) - set(ROWS):
        p.error(f"unknown rows {sorted(unknown)}; choose from {ROWS}")

    from irpo.models import load_tokenizer, resolve_model_path

    s = Settings(model=a.model, pairs=a.pairs, batch=a.batch, warmup=a.warmup, steps=a.steps)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp_name:
        tmp = Path(tmp_name)
        if a.smoke:
            s.model = "tiny char-level Llama (random)"
            model_path = tiny_model(tmp / "model")
            pairs = synthetic_pairs(load_tokenizer(model_path), a.pairs)
            source = "synthetic arithmetic"
        else:
            model_path = resolve_model_path(a.model)
            pairs = gsm8k_pairs(load_tokenizer(model_path), a.pairs)
            source = "GSM8K train gold solutions vs. a wrong final answer"
        pairs_file = tmp / "pairs.jsonl"
        pairs_file.write_text("".join(json.dumps(r) + "\n" for r in pairs), encoding="utf-8")
        mean = {
            k: statistics.mean(len(r[k]) for r in pairs)
            for k in ("prompt_ids", "chosen_ids", "rejected_ids")
        }
        pair_stats = (
            f"{len(pairs)} ({source}); mean tokens: prompt {mean['prompt_ids']:.0f}, "
            f"chosen {mean['chosen_ids']:.0f}, rejected {mean['rejected_ids']:.0f}"
        )
        results = []
        for row in rows:
            print(f"running {row} ...", file=sys.stderr, flush=True)
            results.append(run_row(row, model_path, pairs_file, s, tmp))

    command = " ".join([".venv/bin/python bench/bench_train.py", *sys.argv[1:]])
    text = section(results, s, pair_stats, command)
    print(text)
    for r in results:
        if "error" in r:
            print(f"\n{r['row']}: not measured\n{r['error']}", file=sys.stderr)
    if a.write:
        write_section(a.write, text)


if __name__ == "__main__":
    main()
