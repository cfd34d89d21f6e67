"""Reference log-probs: log M_t(y|x) of every pair's chosen and rejected response, computed once.

IRPO's reference is M_t, the model the iteration starts from (Pang et al. 2024, Sec. 2). Its
log-probs are fixed during training, so they are computed in one batched no-grad pass over the
exact stored token ids before training starts and stored with the pairs; training then holds a
single model (the policy) in memory instead of a frozen second copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from irpo.errors import IrpoError
from irpo.records import Pair, read_jsonl, read_pairs, write_jsonl
from irpo.train.allocator import low_fragmentation
from irpo.train.batching import pair_rows
from irpo.train.scoring import SequenceScorer

if TYPE_CHECKING:
    from irpo.config import ModelConfig


def compute_reference_logps(
    model: Any, pairs: list[Pair], *, batch_size: int, response_only: bool = True
) -> None:
    """Fill `ref_chosen_logp` / `ref_rejected_logp` of every pair, in place.

    `model` is M_t: a causal LM (or a `SequenceScorer` around one) on its device. Pairs are
    scored `batch_size` at a time (2 * batch_size rows), longest first, so that rows of similar
    length share a batch and padding stays small.
    """
    with low_fragmentation(model):
        scores = score_pairs(
            model, pairs, range(len(pairs)), batch_size=batch_size, response_only=response_only
        )
    for pair, (chosen, rejected) in zip(pairs, scores, strict=True):
        pair.ref_chosen_logp = chosen
        pair.ref_rejected_logp = rejected


def score_pairs(
    model: Any,
    pairs: Sequence[Pair],
    indices: Sequence[int],
    *,
    batch_size: int,
    response_only: bool = True,
    num_batches: int | None = None,
) -> list[tuple[float, float]]:
    """(log M(chosen|x), log M(rejected|x)) for `pairs[i]`, i in `indices`, in that order.

    `num_batches` pads the pass with repeats of the first batch up to that many forwards: under
    FSDP or ZeRO-3 every process must run the same number of forwards, whatever its share.
    """
    scorer = model if _is_scorer(model) else SequenceScorer(model, response_only=response_only)
    device = next(scorer.parameters()).device
    order = sorted(indices, key=lambda i: -_row_length(pairs[i]))
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    num_real = len(batches)
    if num_batches is not None:
        batches += [batches[0] if batches else [0]] * (num_batches - len(batches))
    scores: dict[int, tuple[float, float]] = {}
    was_training = scorer.training
    scorer.eval()
    try:
        with torch.no_grad():
            for k, batch in enumerate(batches):
                rows = pair_rows([pairs[i] for i in batch]).to(device)
                logps = scorer(rows.input_ids, rows.response_mask).float().tolist()  # [2B]
                if k >= num_real:
                    continue  # a filler forward
                for j, i in enumerate(batch):
                    scores[i] = (logps[j], logps[j + len(batch)])
    finally:
        scorer.train(was_training)
    return [scores[i] for i in indices]


def _row_length(pair: Pair) -> int:
    return len(pair.prompt_ids) + max(len(pair.chosen_ids), len(pair.rejected_ids))


def _is_scorer(model: Any) -> bool:
    inner = getattr(model, "module", model)  # DDP / DeepSpeed wrap the prepared scorer
    return isinstance(inner, SequenceScorer)


# --------------------------------------------------------------------------- the reference file


def write_reference(path: str | Path, pairs: Sequence[Pair]) -> None:
    """One row per pair, in pair order: {"index", "chosen", "rejected"} (log-probs)."""
    write_jsonl(
        path,
        (
            {"index": i, "chosen": p.ref_chosen_logp, "rejected": p.ref_rejected_logp}
            for i, p in enumerate(pairs)
        ),
    )


def with_reference(pairs: Sequence[Pair], path: str | Path) -> list[Pair]:
    """Copies of `pairs` with the reference log-probs of the file `write_reference` wrote."""
    refs = {int(r["index"]): (float(r["chosen"]), float(r["rejected"])) for r in read_jsonl(path)}
    if set(refs) != set(range(len(pairs))):
        raise IrpoError(f"{path}: {len(refs)} reference rows for {len(pairs)} pairs")
    return [
        replace(p, ref_chosen_logp=refs[i][0], ref_rejected_logp=refs[i][1])
        for i, p in enumerate(pairs)
    ]


def reference_file(
    model_path: str,
    pairs_path: str | Path,
    out: str | Path,
    *,
    batch_size: int,
    model_cfg: ModelConfig | None = None,
) -> int:
    """The reference stage: log M(chosen|x), log M(rejected|x) of every pair in `pairs_path`
    under `model_path`, written to `out`; returns the number of pairs."""
    from irpo.models import load_model

    model = load_model(
        model_path,
        dtype=model_cfg.dtype if model_cfg else "auto",
        device=model_cfg.device if model_cfg else "auto",
        trust_remote_code=model_cfg.trust_remote_code if model_cfg else False,
    )
    pairs = read_pairs(pairs_path)
    compute_reference_logps(model, pairs, batch_size=batch_size)
    write_reference(out, pairs)
    return len(pairs)
