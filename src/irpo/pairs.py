"""Verified samples -> preference pairs, by the paper's rule (IRPO Sec. 2, steps 3-4).

For each question the samples are split into winners (correct final answer) and losers (wrong
or unparseable answer). Questions with no loser carry no preference and are dropped; questions
with no winner are dropped too unless the gold solution stands in as a winner. Then the two lists
are walked side by side, "restarting a list from its first element when it runs out": pair i is
(W[i mod |W|], L[i mod |L|]), up to K pairs per question. Pure code: no model, no files.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from irpo.config import PairsConfig
from irpo.errors import IrpoError
from irpo.records import Pair, Sample

log = logging.getLogger(__name__)

GOLD_INDEX = -1
"""`Pair.chosen_index` of a pair whose winner is the gold solution."""


@dataclass
class PairStats:
    """What pairing saw and did in one iteration.

    Question counts: `questions` = all_correct + all_wrong + mixed; `unparseable` counts the
    questions whose samples all lack a parsable answer (a subset of all_wrong). `questions_paired`
    and `gold_questions` count questions with at least one pair in the output / with the gold
    solution in their winner list. Pair counts: `pairs` kept in the output; `gold_winners` of them
    with the gold solution as winner; `dropped_too_long`, `dropped_duplicates` zip pairs skipped
    (see `make_pairs`); `dropped_cap` pairs removed by `max_pairs`. Token means are over the output.
    """

    questions: int = 0
    all_correct: int = 0
    all_wrong: int = 0
    mixed: int = 0
    unparseable: int = 0
    unparseable_samples: int = 0
    questions_paired: int = 0
    gold_questions: int = 0
    gold_winners: int = 0
    pairs: int = 0
    dropped_duplicates: int = 0
    dropped_too_long: int = 0
    dropped_cap: int = 0
    mean_chosen_tokens: float = 0.0
    mean_rejected_tokens: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Response(NamedTuple):
    text: str
    ids: list[int]
    sample_index: int  # or GOLD_INDEX


def make_pairs(
    samples: Sequence[Sample],
    prompts: Mapping[str, tuple[str, list[int]]],
    cfg: PairsConfig,
    *,
    seed: int,
    gold: Mapping[str, tuple[str, list[int]]] | None = None,
) -> tuple[list[Pair], PairStats]:
    """Build up to K = `cfg.pairs_per_question` preference pairs per question.

    Args:
        samples: verified samples (`correct` set), any order; grouped by `problem_id` and kept
            in order of each question's first appearance.
        prompts: problem_id -> (prompt text, prompt token ids), as given to the model.
        cfg: the pairing options (see `PairsConfig`).
        seed: drives `order="random"` (per question, independent of the other questions) and the
            `max_pairs` subset.
        gold: problem_id -> (gold completion text, its token ids ending with EOS), for tasks with
            gold reasoning; used per `cfg.gold_as_winner`.

    The zip. Before it, each list is ordered per `cfg.order` (sample index; fewest tokens first,
    ties by index; or a seeded shuffle). A gold winner goes first in the winner list, ahead of the
    ordered samples, so that `always` really puts it in a pair. The zip (W[i mod |W|],
    L[i mod |L|]) repeats with period lcm(|W|, |L|), and within one period no two pairs share both
    samples; so the walk stops after K kept pairs or one full period, whichever comes first: when
    both lists are shorter than K a question gets at most lcm(|W|, |L|) pairs (|W| * |L| when the
    sizes are coprime), never the same two samples twice. Along the walk a pair is skipped (and
    counted) when its prompt plus its longer response exceeds `cfg.max_length` tokens, or, with
    `cfg.dedupe`, when its (chosen text, rejected text) repeat an earlier pair of the question;
    the walk then continues, so skips cost no pairs while distinct ones remain.

    The gold solution. GSM8K adds its human solution to the winners "so that set is never empty".
    The default `if_no_correct` does exactly that: questions without a correct sample get the gold
    winner; others are paired on the model's own samples only, which keeps the winners on-policy
    (a human solution is far less likely under M_t, and its log-ratio dominates the DPO term).
    `always` adds it to every question's winners (the literal reading); `never` drops questions
    without a correct sample, as the paper does for ARC, which has no gold reasoning.

    Finally, above `cfg.max_pairs` pairs a seeded random subset is kept, in the original order.

    Returns:
        (pairs, stats); `Pair.chosen_index` is GOLD_INDEX (-1) for a gold winner.

    Raises:
        IrpoError: a sample is not verified, or a question has no prompt.
    """
    stats = PairStats()
    pairs: list[Pair] = []
    for problem_id, group in _group(samples).items():
        if problem_id not in prompts:
            raise IrpoError(f"sample of problem {problem_id!r}: no prompt for this problem id")
        winners = [s for s in group if s.correct]
        losers = [s for s in group if not s.correct]
        _count_question(stats, group, winners, losers)
        if not losers:
            continue  # all correct: no preference to learn
        rng = random.Random(f"{seed}:{problem_id}")
        ordered_winners = _order(winners, cfg.order, rng)
        ordered_losers = _order(losers, cfg.order, rng)
        gold_item = gold.get(problem_id) if gold is not None else None
        if gold_item is not None and (
            cfg.gold_as_winner == "always"
            or (cfg.gold_as_winner == "if_no_correct" and not winners)
        ):
            ordered_winners.insert(0, _Response(gold_item[0], list(gold_item[1]), GOLD_INDEX))
            stats.gold_questions += 1
        if not ordered_winners:
            continue  # all wrong and no gold winner
        prompt, prompt_ids = prompts[problem_id]
        for chosen, rejected in _walk(ordered_winners, ordered_losers, len(prompt_ids), cfg, stats):
            pairs.append(
                Pair(
                    problem_id=problem_id,
                    prompt=prompt,
                    prompt_ids=list(prompt_ids),
                    chosen=chosen.text,
                    chosen_ids=list(chosen.ids),
                    rejected=rejected.text,
                    rejected_ids=list(rejected.ids),
                    chosen_index=chosen.sample_index,
                    rejected_index=rejected.sample_index,
                )
            )
    pairs = _cap(pairs, cfg.max_pairs, seed, stats)
    _summarise(stats, pairs)
    log.debug("pairing (%s): %s", cfg.model_dump(), stats.to_dict())
    return pairs, stats


def preference_rows(pairs: Sequence[Pair]) -> list[dict[str, str]]:
    """The pairs as `prompt` / `chosen` / `rejected` text rows, the format other trainers read."""
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


# --------------------------------------------------------------------------- steps


def _group(samples: Sequence[Sample]) -> dict[str, list[Sample]]:
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        if s.correct is None:
            raise IrpoError(
                f"sample {s.index} of problem {s.problem_id!r} is not verified (correct is null): "
                "pair samples written by the sampling stage (`irpo sample`), which scores each one"
            )
        groups.setdefault(s.problem_id, []).append(s)
    return groups


def _count_question(
    stats: PairStats, group: list[Sample], winners: list[Sample], losers: list[Sample]
) -> None:
    stats.questions += 1
    unparsed = sum(1 for s in group if not s.parsed)
    stats.unparseable_samples += unparsed
    if not losers:
        stats.all_correct += 1
    elif not winners:
        stats.all_wrong += 1
        stats.unparseable += unparsed == len(group)
    else:
        stats.mixed += 1


def _order(samples: list[Sample], order: str, rng: random.Random) -> list[_Response]:
    """The list the zip walks: by sample index, fewest tokens first, or a seeded shuffle."""
    by_index = sorted(samples, key=lambda s: s.index)
    if order == "shortest":
        by_index.sort(key=lambda s: s.num_tokens)  # stable: ties stay in index order
    elif order == "random":
        rng.shuffle(by_index)
    elif order != "sample":
        raise IrpoError(f"pairs.order: unknown value {order!r}")
    return [_Response(s.text, s.token_ids, s.index) for s in by_index]


def _walk(
    winners: list[_Response],
    losers: list[_Response],
    prompt_tokens: int,
    cfg: PairsConfig,
    stats: PairStats,
) -> Iterator[tuple[_Response, _Response]]:
    """The wrap-around zip over one period, skipping too-long and repeated pairs (see make_pairs)."""
    seen: set[tuple[str, str]] = set()
    kept = 0
    for i in range(math.lcm(len(winners), len(losers))):
        if kept == cfg.pairs_per_question:
            return
        chosen, rejected = winners[i % len(winners)], losers[i % len(losers)]
        longest = max(len(chosen.ids), len(rejected.ids))
        if cfg.max_length is not None and prompt_tokens + longest > cfg.max_length:
            stats.dropped_too_long += 1
            continue
        if cfg.dedupe:
            key = (chosen.text, rejected.text)
            if key in seen:
                stats.dropped_duplicates += 1
                continue
            seen.add(key)
        kept += 1
        yield chosen, rejected


def _cap(pairs: list[Pair], max_pairs: int | None, seed: int, stats: PairStats) -> list[Pair]:
    """A seeded random subset of `max_pairs` pairs, in their original order (paper: ~60k)."""
    if max_pairs is None or len(pairs) <= max_pairs:
        return pairs
    keep = sorted(random.Random(seed).sample(range(len(pairs)), max_pairs))
    stats.dropped_cap = len(pairs) - max_pairs
    return [pairs[i] for i in keep]


def _summarise(stats: PairStats, pairs: list[Pair]) -> None:
    stats.pairs = len(pairs)
    stats.questions_paired = len({p.problem_id for p in pairs})
    stats.gold_winners = sum(1 for p in pairs if p.chosen_index == GOLD_INDEX)
    if pairs:
        stats.mean_chosen_tokens = sum(len(p.chosen_ids) for p in pairs) / len(pairs)
        stats.mean_rejected_tokens = sum(len(p.rejected_ids) for p in pairs) / len(pairs)
