"""The pairs stage around the pure `irpo.pairs`: the token views of a task's problems (prompts
exactly as the sampler gave them, gold completions), verified samples -> pairs, and the pairs
files that training and other trainers read.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from irpo.records import Pair, Problem, Sample, write_json, write_jsonl
from irpo.tasks.base import Task

if TYPE_CHECKING:
    from irpo.config import RunConfig
    from irpo.pairs import PairStats


def prompt_tokens(
    task: Task, problems: list[Problem], tokenizer: Any, chat_template: str
) -> dict[str, tuple[str, list[int]]]:
    """problem id -> (prompt text, prompt ids), exactly as the sampler gave them to the model."""
    from irpo.models import encode_prompt

    return {p.id: encode_prompt(tokenizer, task.prompt(p), chat_template) for p in problems}


def gold_tokens(
    task: Task, problems: list[Problem], tokenizer: Any
) -> dict[str, tuple[str, list[int]]]:
    """problem id -> (gold completion, its ids ending with EOS), for problems that have one."""
    from irpo.models import encode_response

    gold = {}
    for p in problems:
        text = task.gold_completion(p)
        if text is not None:
            gold[p.id] = (text, encode_response(tokenizer, text))
    return gold


def pair_samples(
    task: Task,
    problems: list[Problem],
    samples: list[Sample],
    tokenizer: Any,
    config: RunConfig,
    *,
    seed: int,
) -> tuple[list[Pair], PairStats]:
    """Verified samples -> the paper's K pairs per question (`irpo.pairs.make_pairs`)."""
    from irpo.pairs import make_pairs

    use_gold = task.has_gold_solution and config.pairs.gold_as_winner != "never"
    return make_pairs(
        samples,
        prompt_tokens(task, problems, tokenizer, config.model.chat_template),
        config.pairs,
        seed=seed,
        gold=gold_tokens(task, problems, tokenizer) if use_gold else None,
    )


def write_pairs(pairs: list[Pair], stats: PairStats, out_dir: Path) -> None:
    """pairs.jsonl (token ids, reference log-probs), preference.jsonl (prompt/chosen/rejected
    rows that TRL and other trainers read) and pair_stats.json."""
    from irpo.pairs import preference_rows

    write_jsonl(out_dir / "pairs.jsonl", (p.to_dict() for p in pairs))
    write_jsonl(out_dir / "preference.jsonl", preference_rows(pairs))
    write_json(out_dir / "pair_stats.json", stats.to_dict())
