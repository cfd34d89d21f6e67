"""`irpo sample`, `irpo merge-samples` and `irpo eval`: the inference stages on their own."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from irpo.cli.app import SetOption, app, command
from irpo.cli.data import TaskOption, parse_task_options

if TYPE_CHECKING:
    from irpo.config import RunConfig
    from irpo.records import Problem
    from irpo.sampling import Progress, Shard
    from irpo.tasks.base import Task

ModelArg = Annotated[str, typer.Argument(help="Hugging Face id, local folder or smollm2-135m.")]
TaskOpt = Annotated[
    str | None, typer.Option("--task", "-t", help="Task name (default: the config's task.name).")
]
SourceOpt = Annotated[
    str | None,
    typer.Option("--source", help="Data file, folder or Hub id (default: from the config)."),
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML run configuration.")]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N questions.")]


def _setup(
    config: Path | None,
    overrides: list[str] | None,
    task_name: str | None,
    options: list[str] | None,
) -> tuple[RunConfig, Task]:
    from irpo.config import load_config
    from irpo.tasks import get_task

    cfg = load_config(config, overrides or [])
    name = task_name or cfg.task.name
    task_options = cfg.task.options if name == cfg.task.name else {}
    task = get_task(name, **{**task_options, **parse_task_options(options or [])})
    return cfg, task


def _problems(
    cfg: RunConfig,
    task: Task,
    source: str | None,
    split: str,
    limit: int | None,
    default: str | None,
) -> list[Problem]:
    return task.load(source or default, split, limit=limit, skip_bad_rows=cfg.task.skip_bad_rows)


@contextmanager
def _progress_bar(desc: str) -> Iterator[Callable[[Progress], None]]:
    """A tqdm bar over questions, showing generated tokens per second (a new bar per run)."""
    from tqdm.auto import tqdm

    bar: Any = None
    current: Progress | None = None

    def update(p: Progress) -> None:
        nonlocal bar, current
        if p is not current:
            if bar is not None:
                bar.close()
            bar, current = tqdm(total=p.questions_total, desc=desc, unit="q", dynamic_ncols=True), p
        bar.set_postfix({"tok/s": f"{p.tokens_per_s:.0f}"}, refresh=False)
        bar.update(p.questions_done - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def _samples_file(out: Path, shard: Shard | None) -> Path:
    if shard is None:
        return out / "samples.jsonl"
    return out / f"samples.shard-{shard.index}-of-{shard.count}.jsonl"


@app.command()
@command
def sample(
    model: ModelArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    task: TaskOpt = None,
    source: SourceOpt = None,
    split: Annotated[
        str | None, typer.Option("--split", "-s", help="Split (default: task.train_split).")
    ] = None,
    config: ConfigOpt = None,
    overrides: list[str] | None = SetOption,
    options: list[str] | None = TaskOption,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Sample only shard I of N (I/N, 0-based).")
    ] = None,
    iteration: Annotated[
        int, typer.Option("--iteration", min=0, help="Iteration (picks temperature and seeds).")
    ] = 0,
    limit: LimitOpt = None,
) -> None:
    """Sample N solutions per question, verify each, and write samples + statistics to OUT.

    Writes OUT/samples.jsonl (or OUT/samples.shard-I-of-N.jsonl) and its .stats.json; run again
    with the same arguments to resume an interrupted run.
    """
    from irpo.sampling import SamplingParams, Shard, make_engine, sample_problems

    the_shard = Shard.parse(shard) if shard else None  # before any slow loading
    cfg, the_task = _setup(config, overrides, task, options)
    problems = _problems(
        cfg,
        the_task,
        source,
        split or cfg.task.train_split,
        limit or cfg.task.train_limit,
        cfg.task.train_source,
    )
    params = SamplingParams(
        num_samples=cfg.sampling.num_samples,
        temperature=cfg.sampling.temperature_for(iteration),
        top_p=cfg.sampling.top_p,
        max_new_tokens=cfg.sampling.max_new_tokens,
        seed=cfg.seed,
        iteration=iteration,
        stop_at_final_answer=cfg.sampling.stop_at_final_answer,
    )
    engine = make_engine(cfg.model, cfg.sampling, model_path=model)
    path = _samples_file(out, the_shard)
    with _progress_bar("sampling") as bar:
        stats = sample_problems(
            engine,
            the_task,
            problems,
            params,
            path,
            shard=the_shard,
            progress=bar,
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


@app.command("merge-samples")
@command
def merge_samples(
    out: Annotated[Path, typer.Argument(help="Folder holding samples.shard-*-of-*.jsonl files.")],
    task: TaskOpt = None,
    source: SourceOpt = None,
    split: Annotated[
        str | None, typer.Option("--split", "-s", help="Split (default: task.train_split).")
    ] = None,
    config: ConfigOpt = None,
    overrides: list[str] | None = SetOption,
    options: list[str] | None = TaskOption,
    limit: LimitOpt = None,
) -> None:
    """Merge shard files into OUT/samples.jsonl, in the order an unsharded run writes."""
    from irpo.errors import IrpoError
    from irpo.records import write_json
    from irpo.sampling import SampleStats, merge_shards
    from irpo.sampling.run import stats_file
    from irpo.sampling.shards import write_samples

    cfg, the_task = _setup(config, overrides, task, options)
    problems = _problems(
        cfg,
        the_task,
        source,
        split or cfg.task.train_split,
        limit or cfg.task.train_limit,
        cfg.task.train_source,
    )
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


@app.command("eval")
@command
def eval_(
    model: ModelArg,
    task: TaskOpt = None,
    source: SourceOpt = None,
    split: Annotated[
        str | None, typer.Option("--split", "-s", help="Split (default: task.eval_split).")
    ] = None,
    maj: Annotated[
        int | None, typer.Option("--maj", min=0, help="K for maj@K and pass@K (0: greedy only).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Metrics JSON (samples are kept beside it).")
    ] = None,
    config: ConfigOpt = None,
    overrides: list[str] | None = SetOption,
    options: list[str] | None = TaskOption,
    limit: LimitOpt = None,
) -> None:
    """Greedy accuracy, maj@K, pass@K and the parse-failure rate of MODEL on a split."""
    from irpo.evaluate import evaluate_model
    from irpo.sampling import make_engine

    cfg, the_task = _setup(config, overrides, task, options)
    if maj is not None:
        cfg.eval.maj_k = maj
    problems = _problems(
        cfg,
        the_task,
        source,
        split or cfg.task.eval_split,
        limit or cfg.task.eval_limit,
        cfg.task.eval_source,
    )
    engine = make_engine(cfg.model, cfg.sampling, model_path=model)
    with _progress_bar("evaluating") as bar:
        result = evaluate_model(
            engine,
            the_task,
            problems,
            cfg.eval,
            seed=cfg.seed,
            out_path=out,
            max_new_tokens=cfg.eval.max_new_tokens or cfg.sampling.max_new_tokens,
            stop_at_final_answer=cfg.sampling.stop_at_final_answer,
            progress=bar,
        )

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}%"

    typer.echo(f"{result.num_problems} questions")
    typer.echo(f"greedy accuracy:    {pct(result.greedy_accuracy)}")
    if result.k:
        typer.echo(f"maj@{result.k} accuracy:   {pct(result.maj_accuracy)}")
        typer.echo(f"pass@{result.k} accuracy:  {pct(result.pass_accuracy)}")
    typer.echo(f"parse failure rate: {pct(result.parse_failure_rate)}")
    if out is not None:
        typer.echo(f"metrics: {out}")
