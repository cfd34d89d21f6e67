"""`irpo sample` and `irpo merge-samples`: the sampling stage on its own, whole or in shards."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from irpo.cli.app import PANEL_STAGES, app, command
from irpo.cli.options import (
    ConfigOpt,
    IterationOpt,
    LimitOpt,
    ModelOpt,
    SetOpt,
    ShardOpt,
    SourceOpt,
    SplitOpt,
    TaskOpt,
    TaskOptionsOpt,
    engine_for,
    load_problems,
    load_run_config,
    model_of,
    sampling_progress,
    shard_of,
    task_of,
)

if TYPE_CHECKING:
    from irpo.sampling import Shard


def _samples_file(out: Path, shard: Shard | None) -> Path:
    from irpo.sampling.shards import shard_path

    return out / "samples.jsonl" if shard is None else shard_path(out / "samples.jsonl", shard)


@app.command(rich_help_panel=PANEL_STAGES)
@command
def sample(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    model: ModelOpt = None,
    task: TaskOpt = None,
    source: SourceOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    options: TaskOptionsOpt = None,
    iteration: IterationOpt = 0,
    shard: ShardOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Sample N solutions per training question, verify each, write samples + statistics.

    Writes OUT/samples.jsonl (or OUT/samples.shard-I-of-N.jsonl) and its .stats.json; run again
    with the same arguments to resume an interrupted run.
    """
    from irpo.sampling import Shard, sample_problems

    if shard is not None and shard != "auto":
        Shard.parse(shard)  # a malformed --shard fails before any slow loading
    cfg = load_run_config(config, overrides)
    the_shard = shard_of(shard, cfg)
    the_task = task_of(cfg, task, options)
    problems = load_problems(cfg, the_task, "train", source=source, split=split, limit=limit)
    params = cfg.sampling.params_for(iteration, seed=cfg.seed)
    engine = engine_for(cfg, model_of(cfg, model))
    path = _samples_file(out, the_shard)
    with sampling_progress("sampling") as bar:
        stats = sample_problems(
            engine, the_task, problems, params, path, shard=the_shard, progress=bar
        )
    _echo_sample_summary(stats.summary(), path)


def _echo_sample_summary(s: dict[str, Any], path: Path) -> None:
    typer.echo(
        f"{s['questions']} questions x {s['num_samples']} samples: {s['correct']} correct, "
        f"{s['wrong']} wrong, {s['unparseable']} unparseable"
    )
    typer.echo(
        f"questions all correct {s['all_correct']}, all wrong {s['all_wrong']}, mixed {s['mixed']}"
    )
    if s.get("tokens_per_s"):
        typer.echo(f"{s['new_tokens']} tokens in {s['elapsed_s']:.1f}s ({s['tokens_per_s']} tok/s)")
    typer.echo(f"samples: {path}")


@app.command("merge-samples", rich_help_panel=PANEL_STAGES)
@command
def merge_samples(
    out: Annotated[Path, typer.Argument(help="Folder holding samples.shard-*-of-*.jsonl files.")],
    task: TaskOpt = None,
    source: SourceOpt = None,
    split: SplitOpt = None,
    limit: LimitOpt = None,
    options: TaskOptionsOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Merge shard files into OUT/samples.jsonl, in the order an unsharded run writes."""
    from irpo.errors import IrpoError
    from irpo.records import write_json
    from irpo.sampling import SampleStats, merge_shards
    from irpo.sampling.shards import write_samples
    from irpo.sampling.stage import stats_file

    cfg = load_run_config(config, overrides)
    the_task = task_of(cfg, task, options)
    problems = load_problems(cfg, the_task, "train", source=source, split=split, limit=limit)
    paths = sorted(out.glob("samples.shard-*-of-*.jsonl"))
    if not paths:
        raise IrpoError(f"{out}: no samples.shard-I-of-N.jsonl files to merge")
    samples = merge_shards(paths, problems)
    target = out / "samples.jsonl"
    write_samples(target, samples)
    stats = SampleStats.of_samples(samples, cfg.sampling.num_samples)
    write_json(stats_file(target), stats.to_dict())
    typer.echo(
        f"merged {len(paths)} shards: {len(samples)} samples of {len(stats.questions)} questions"
    )
    typer.echo(f"samples: {target}")
