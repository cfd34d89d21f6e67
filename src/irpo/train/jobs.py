"""The two kinds of training job: on preference pairs (IRPO, DPO) and on single responses (SFT),
each with its method's loss (`irpo.methods`); and `irpo train` from files."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from irpo.config import ModelConfig, RunConfig, TrainConfig
from irpo.errors import IrpoError
from irpo.methods import Method, get_method, training_method
from irpo.records import Pair, read_jsonl, write_jsonl
from irpo.tracking import ProgressFactory
from irpo.train.batching import SftExample
from irpo.train.checkpoint import TrainDir
from irpo.train.fit import Job, LogFn, TrainResult, fingerprint, fit
from irpo.train.objectives import sft_objective
from irpo.train.reference import score_pairs

log = logging.getLogger(__name__)


def train_preference(
    model_path: str,
    pairs: list[Pair],
    cfg: TrainConfig,
    output_dir: str | Path,
    *,
    seed: int,
    method: Method | str = "irpo",
    model_cfg: ModelConfig | None = None,
    resume: bool = True,
    log_fn: LogFn | None = None,
    progress: ProgressFactory | None = None,
) -> TrainResult:
    """Train M_{t+1} from M_t = `model_path` on preference pairs with `method`'s loss.

    The default, IRPO Eq. 1, weighs the winner's NLL by `cfg.alpha`; `dpo` fixes alpha = 0.
    Pairs without reference log-probs get them from `model_path` itself (the paper's reference
    M_t) in a no-grad pass before the first step; they are kept in OUT/reference_logps.jsonl.
    `pairs` is not modified.
    """
    m = get_method(method) if isinstance(method, str) else method
    if not m.preference:
        raise IrpoError(f"method {m.name!r} does not train on preference pairs")
    if not pairs:
        raise IrpoError("no preference pairs to train on")
    cfg = m.train_config(cfg)
    refs = [(p.ref_chosen_logp, p.ref_rejected_logp) for p in pairs]
    job = Job(
        kind=m.name,
        examples=pairs,
        objective=m.objective(cfg),
        length_of=lambda p: len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)),
        fingerprint=fingerprint(
            [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in pairs], extra=refs
        ),
        prepare=lambda acc, scorer, tdir: _with_references(acc, scorer, tdir, pairs, cfg),
    )
    return fit(
        job,
        model_path,
        cfg,
        output_dir,
        seed=seed,
        model_cfg=model_cfg,
        resume=resume,
        log_fn=log_fn,
        progress=progress,
    )


def train_sft(
    model_path: str,
    examples: list[SftExample],
    cfg: TrainConfig,
    output_dir: str | Path,
    *,
    seed: int,
    method: Method | None = None,
    model_cfg: ModelConfig | None = None,
    resume: bool = True,
    log_fn: LogFn | None = None,
    progress: ProgressFactory | None = None,
) -> TrainResult:
    """Supervised fine-tuning on (prompt, response) tokens: per-sequence mean NLL, or the loss
    of `method` (one that does not train on pairs).

    The paper's SFT-on-gold and STaR baselines, and how a seed model is trained from scratch.
    """
    if method is not None and method.preference:
        raise IrpoError(f"method {method.name!r} trains on preference pairs, not SFT examples")
    if not examples:
        raise IrpoError("no SFT examples to train on")
    if method is not None:
        cfg = method.train_config(cfg)
    job = Job(
        kind="sft" if method is None else method.name,
        examples=examples,
        objective=sft_objective() if method is None else method.objective(cfg),
        length_of=lambda e: len(e.prompt_ids) + len(e.response_ids),
        fingerprint=fingerprint([(e.prompt_ids, e.response_ids) for e in examples]),
    )
    return fit(
        job,
        model_path,
        cfg,
        output_dir,
        seed=seed,
        model_cfg=model_cfg,
        resume=resume,
        log_fn=log_fn,
        progress=progress,
    )


def _with_references(
    accelerator: Any, scorer: Any, tdir: TrainDir, pairs: list[Pair], cfg: TrainConfig
) -> list[Pair]:
    """Copies of the pairs, with reference log-probs under the not-yet-trained policy (M_t)."""
    from accelerate.utils import gather_object

    missing = [
        i for i, p in enumerate(pairs) if p.ref_chosen_logp is None or p.ref_rejected_logp is None
    ]
    if not missing:
        return pairs
    if tdir.reference.exists():  # computed by an interrupted run of this same training
        scores = {int(r["index"]): (r["chosen"], r["rejected"]) for r in read_jsonl(tdir.reference)}
    else:
        if accelerator.is_main_process:
            log.info("reference log-probs of %d pairs under the starting model", len(missing))
        rank, world = accelerator.process_index, accelerator.num_processes
        share = missing[rank::world]
        per_process = math.ceil(len(missing) / world)
        rows = score_pairs(
            scorer,
            pairs,
            share,
            batch_size=cfg.ref_batch_size,
            num_batches=math.ceil(per_process / cfg.ref_batch_size),
        )
        gathered = gather_object([(i, c, r) for i, (c, r) in zip(share, rows, strict=True)])
        scores = {int(i): (c, r) for i, c, r in gathered}
        if accelerator.is_main_process:
            write_jsonl(
                tdir.reference,
                ({"index": i, "chosen": c, "rejected": r} for i, (c, r) in sorted(scores.items())),
            )
        accelerator.wait_for_everyone()
    if set(scores) != set(missing):
        raise IrpoError(f"{tdir.reference}: does not match the pairs; remove it and retry")
    return [
        replace(p, ref_chosen_logp=scores[i][0], ref_rejected_logp=scores[i][1])
        if i in scores
        else p
        for i, p in enumerate(pairs)
    ]


# --------------------------------------------------------------------------- from files


def read_sft_examples(path: str | Path) -> list[SftExample]:
    """SFT examples from a JSONL file of pairs (their distinct chosen responses) or of
    `prompt_ids` / `response_ids` rows (each row one example, as given).

    Pairs repeat a winner once per loser it was zipped with (IRPO's K pairs per question);
    SFT counts each distinct (prompt, response) of a pairs file once, so no winner weighs more
    for having been paired more often. Rows of SFT examples are taken as they are (STaR trains
    on every correct sample, repeats included, as `irpo run` does).
    """
    examples: list[SftExample] = []
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    for lineno, row in enumerate(read_jsonl(path), start=1):
        if "chosen_ids" in row and "prompt_ids" in row:
            prompt, response = row["prompt_ids"], row["chosen_ids"]
        elif "response_ids" in row and "prompt_ids" in row:
            examples.append(SftExample(list(row["prompt_ids"]), list(row["response_ids"])))
            continue
        else:
            raise IrpoError(
                f"{path}:{lineno}: expected a pair (prompt_ids, chosen_ids) or an SFT row "
                "(prompt_ids, response_ids)"
            )
        key = (tuple(prompt), tuple(response))
        if key not in seen:
            seen.add(key)
            examples.append(SftExample(list(prompt), list(response)))
    return examples


def train_file(
    data: str | Path,
    model_path: str,
    config: RunConfig,
    output_dir: str | Path,
    *,
    method: str,
    seed: int | None = None,
    reference: str | Path | None = None,
    resume: bool = True,
    progress: ProgressFactory | None = None,
) -> TrainResult:
    """`irpo train`: read pairs (or SFT rows), train with `method` (a `loop.method` name, or
    `sft`), save to `output_dir`. Methods that do not train on pairs read the file's distinct
    winners (or SFT rows) as examples.

    `seed` defaults to the config's; `reference` is a file of reference log-probs
    (`irpo reference`) for pairs that carry none. The resolved configuration is written to OUT/config.yaml.
    """
    from irpo.config import dump_config
    from irpo.records import read_pairs

    m = training_method(method)
    cfg = config.train
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(config), encoding="utf-8")
    common: dict[str, Any] = {
        "seed": config.seed if seed is None else seed,
        "model_cfg": config.model,
        "resume": resume,
        "progress": progress,
    }
    if not m.preference:
        return train_sft(model_path, read_sft_examples(data), cfg, out, method=m, **common)
    try:
        pairs = read_pairs(data)
    except (KeyError, TypeError) as e:
        raise IrpoError(f"{data}: not a pairs file (missing or bad field {e})") from None
    if reference is not None:
        from irpo.train.reference import with_reference

        pairs = with_reference(pairs, reference)
    return train_preference(model_path, pairs, cfg, out, method=m, **common)
