"""One training round from a finished run's model and samples, with other settings: a quick probe.

Takes M_t and iteration t's samples (and pairs) from RUN_DIR, trains M_{t+1} with the run's
config plus `--set` overrides, evaluates it on the run's held-out problems, and prints one JSON
line. Only training changes between probes, so a learning-rate or loss sweep over one iteration
costs a training and an evaluation each, not a whole run. The numbers in the "Reading" section
of docs/RESULTS.md that compare training settings came from it:

    python bench/one_round.py runs/table1-annealed/irpo --name lr1e-4 --set train.learning_rate=1e-4
    python bench/one_round.py runs/table1-annealed/irpo --name gold --objective sft_gold \\
        --set train.learning_rate=3e-4 --set train.schedule=cosine --set train.epochs=3

--objective: preference (the run's pairs with their stored reference log-probs; alpha = 0 makes it
DPO), sft_gold (SFT on the gold solutions of the run's training questions) or star (SFT on
iteration t's correct samples). The preference objective re-pairs the samples (with fresh
reference log-probs) when a `pairs.*` setting is overridden or with `--step-checked` (arith
only), which first marks as wrong every "correct" sample whose written steps contain an
arithmetic error, to measure what lucky guesses among the winners cost. `--rejected-errors
last|early` (arith) keeps only the pairs whose loser goes wrong first at its last step, or
earlier: with an early error, the loser's later steps are right arithmetic on a wrong value.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from irpo.tasks.arith import apply_operation

_STEP = re.compile(r"(-?\d+)([+\-*])(\d+)=(-?\d+)")


def _steps(text: str) -> list[tuple[int, str, int, int]]:
    """The written steps `a op b = c` of an arith solution, as (a, op, b, c)."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in _STEP.findall(text)]


def steps_are_right(text: str) -> bool:
    """Every written step `a op b = c` of an arith solution is arithmetically right."""
    return all(apply_operation(a, op, b) == c for a, op, b, c in _steps(text))


def first_error(text: str) -> tuple[int | None, int]:
    """(index of the first wrong step, number of steps) of an arith solution; a step is wrong when
    its arithmetic is, or when it does not start from the previous step's result."""
    steps = _steps(text)
    for i, (a, op, b, c) in enumerate(steps):
        if (i > 0 and a != steps[i - 1][3]) or apply_operation(a, op, b) != c:
            return i, len(steps)
    return None, len(steps)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--name", required=True, help="folder under --out for this probe")
    p.add_argument("--iteration", type=int, default=0, help="t: train M_{t+1} from M_t")
    p.add_argument("--objective", choices=("preference", "sft_gold", "star"), default="preference")
    p.add_argument("--step-checked", action="store_true")
    p.add_argument(
        "--rejected-errors",
        choices=("last", "early"),
        help="keep only the pairs whose loser's first wrong step is its last step / an earlier one",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--out", type=Path, default=Path("runs/one_round"))
    a = p.parse_args()

    from irpo.cli.app import setup_logging
    from irpo.config import load_config
    from irpo.evaluate import evaluate_model
    from irpo.loop import Pipeline, model_path
    from irpo.methods import get_method
    from irpo.models import load_model, load_tokenizer
    from irpo.pair_stage import gold_tokens, pair_samples, prompt_tokens
    from irpo.records import read_json, read_pairs, read_samples
    from irpo.rundir import RunDir
    from irpo.sampling import make_engine
    from irpo.train import SftExample, compute_reference_logps, train_preference, train_sft

    setup_logging()
    source = RunDir(a.run_dir)
    cfg = load_config(source.root / "config.yaml", a.overrides)
    out = a.out / a.name
    if out.exists():
        raise SystemExit(f"{out} exists: choose another --name or remove it")
    # A pipeline over a scratch run folder gives the run's task and problems.
    pipe = Pipeline(cfg, out / "run")
    model_t = model_path(source, cfg, a.iteration)
    tokenizer = load_tokenizer(model_t, cfg.model.trust_remote_code)
    it = source.iteration(a.iteration)
    method = get_method(cfg.loop.method)
    start = time.perf_counter()
    common: dict[str, Any] = dict(seed=cfg.iteration_seed(a.iteration), model_cfg=cfg.model)
    if a.objective == "preference":
        if a.step_checked or any(o.startswith("pairs.") for o in a.overrides):
            samples = read_samples(it.samples)
            for s in samples:
                s.correct = bool(s.correct and (not a.step_checked or steps_are_right(s.text)))
            pairs, _ = pair_samples(
                pipe.task,
                pipe.train_problems,
                samples,
                tokenizer,
                cfg,
                seed=cfg.iteration_seed(a.iteration),
            )
            model = load_model(model_t, dtype=cfg.model.dtype, device=cfg.model.device)
            compute_reference_logps(model, pairs, batch_size=cfg.train.ref_batch_size)
            del model
        else:
            pairs = read_pairs(it.pairs)
        if a.rejected_errors:
            kept = []
            for pair in pairs:
                i, n = first_error(pair.rejected)
                if i is not None and (i == n - 1) == (a.rejected_errors == "last"):
                    kept.append(pair)
            pairs = kept
        result = train_preference(
            model_t,
            pairs,
            cfg.train,
            out / "train",
            method=method if method.preference else "irpo",
            **common,
        )
        examples = len(pairs)
    else:
        prompts = prompt_tokens(pipe.task, pipe.train_problems, tokenizer, cfg.model.chat_template)
        if a.objective == "sft_gold":
            sft = [
                SftExample(prompt_ids=prompts[pid][1], response_ids=ids)
                for pid, (_, ids) in gold_tokens(pipe.task, pipe.train_problems, tokenizer).items()
            ]
        else:
            sft = [
                SftExample(prompt_ids=prompts[s.problem_id][1], response_ids=s.token_ids)
                for s in read_samples(it.samples)
                if s.correct and (not a.step_checked or steps_are_right(s.text))
            ]
        result = train_sft(model_t, sft, cfg.train, out / "train", **common)
        examples = len(sft)
    train_s = time.perf_counter() - start
    log = [json.loads(line) for line in (out / "train" / "train_log.jsonl").open()]
    key = "policy_chosen_logps" if a.objective == "preference" else "policy_logps"
    tenth = max(1, len(log) // 10)
    engine = make_engine(cfg.model, cfg.sampling, model_path=str(result.model_dir))
    res = evaluate_model(
        engine,
        pipe.task,
        pipe.eval_problems,
        cfg.eval,
        seed=cfg.seed,
        max_new_tokens=cfg.eval_max_new_tokens,
        stop_at_final_answer=cfg.sampling.stop_at_final_answer,
        out_path=out / "eval.json",
    )
    before = read_json(source.eval_path(a.iteration))
    row = {
        "name": a.name,
        "objective": a.objective
        + (" step-checked" if a.step_checked else "")
        + (f" rejected-errors={a.rejected_errors}" if a.rejected_errors else ""),
        "overrides": a.overrides,
        "examples": examples,
        "steps": result.steps,
        "train_s": round(train_s),
        "greedy_before": before.get("greedy_accuracy"),
        "greedy": res.greedy_accuracy,
        "maj_before": before.get("maj_accuracy"),
        "maj": res.maj_accuracy,
        "pass": res.pass_accuracy,
        "logp_first": round(sum(r[key] for r in log[:tenth]) / tenth, 2),
        "logp_last": round(sum(r[key] for r in log[-tenth:]) / tenth, 2),
    }
    (out / "result.json").write_text(json.dumps(row, indent=1))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
