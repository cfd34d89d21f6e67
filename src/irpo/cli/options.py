"""What the stage commands share: their options, and how they turn into a config, a task,
problems and progress bars.

Every stage command takes its inputs the same way: `--config FILE` and `--set k=v` for the
run configuration; `--model/-m`, `--task/-t`, `--source`, `--split/-s`, `--limit` and `--option`
default to the config's values; `--iteration` picks an iteration's temperature and seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from irpo.errors import IrpoError

if TYPE_CHECKING:
    from irpo.config import RunConfig
    from irpo.records import Problem
    from irpo.sampling import Engine, Progress, Shard
    from irpo.tasks.base import Task

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML run configuration (default: the built-in defaults)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Dotted config override, repeatable: --set sampling.temperature=1.3"
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Hugging Face id, local folder or smollm2-135m (default: model.name_or_path).",
    ),
]
TaskOpt = Annotated[
    str | None,
    typer.Option(
        "--task", "-t", help="gsm8k, arc_challenge, math, arith or custom (default: task.name)."
    ),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source", help="Data file, folder or Hugging Face id (default: the config's source)."
    ),
]
SplitOpt = Annotated[
    str | None,
    typer.Option(
        "--split", "-s", help="Split; picks the file in a folder (default: the config's split)."
    ),
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="Only the first N questions of the source.")
]
TaskOptionsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--option", help="Task option NAME=VALUE, repeatable: --option answer_type=number"
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="Only shard I of N of the questions (I/N, 0-based), or `auto`: the launcher's "
        "RANK of WORLD_SIZE (as `irpo run` starts its workers).",
    ),
]
IterationOpt = Annotated[
    int,
    typer.Option(
        "--iteration", min=0, help="Iteration t: its temperature and seeds, as `irpo run` uses."
    ),
]

Side = Literal["train", "eval"]


def parse_task_options(items: list[str]) -> dict[str, Any]:
    """`["answer_type=number", "max_number=50"]` -> {"answer_type": "number", "max_number": 50}."""
    from irpo.config import parse_override

    options: dict[str, Any] = {}
    for item in items:
        keys, value = parse_override(item)
        if len(keys) != 1:
            raise IrpoError(f"--option {item!r}: expected NAME=VALUE with a plain name")
        options[keys[0]] = value
    return options


def load_run_config(config: Path | None, overrides: list[str] | None) -> RunConfig:
    from irpo.config import load_config

    return load_config(config, overrides or [])


def task_of(cfg: RunConfig, task_name: str | None, options: list[str] | None) -> Task:
    """The `--task` (default: the config's), with the config's options when it is the config's
    task, and `--option` values over them."""
    from irpo.tasks import get_task

    name = task_name or cfg.task.name
    task_options = cfg.task.options if name == cfg.task.name else {}
    return get_task(name, **{**task_options, **parse_task_options(options or [])})


def source_of(cfg: RunConfig, side: Side, source: str | None) -> str | None:
    """`--source`, or the config's train or eval source (eval falls back to train, as runs do)."""
    if source is not None:
        return source
    if side == "eval" and cfg.task.eval_source is not None:
        return cfg.task.eval_source
    return cfg.task.train_source


def split_of(cfg: RunConfig, side: Side, split: str | None) -> str:
    return split or (cfg.task.train_split if side == "train" else cfg.task.eval_split)


def load_problems(
    cfg: RunConfig,
    task: Task,
    side: Side,
    *,
    source: str | None,
    split: str | None,
    limit: int | None,
) -> list[Problem]:
    """The problems of `--source`/`--split`/`--limit`, or the config's training or held-out ones."""
    default_limit = cfg.task.train_limit if side == "train" else cfg.task.eval_limit
    return task.load(
        source_of(cfg, side, source),
        split_of(cfg, side, split),
        limit=limit or default_limit,
        skip_bad_rows=cfg.task.skip_bad_rows,
    )


def shard_of(text: str | None, cfg: RunConfig) -> Shard | None:
    """`--shard I/N`; `auto` in a launched worker: its rank's shard, and its rank's GPUs."""
    from irpo.sampling import Shard

    if text is None:
        return None
    if text == "auto":
        from irpo.launch import become_worker

        rank, world = become_worker(int(cfg.sampling.vllm.get("tensor_parallel_size", 1)))
        return Shard(rank, world)
    return Shard.parse(text)


def model_of(cfg: RunConfig, model: str | None) -> str:
    from irpo.config import SCRATCH

    name = model or cfg.model.name_or_path
    if name == SCRATCH:
        raise IrpoError(
            f"model {SCRATCH!r} is built by `irpo run` (the seed model); give --model a folder"
        )
    return name


_ENGINE: list[tuple[tuple[str, str], Engine]] = []


def engine_for(cfg: RunConfig, model_path: str) -> Engine:
    """The sampling engine of `model_path`; commands chained with `--then` in one process
    (`irpo eval ... --then sample ...`) share it when their model and engine settings agree,
    so the model is loaded (and a vLLM engine's memory taken) once."""
    from irpo.sampling import make_engine

    key = (model_path, repr((cfg.model, cfg.sampling)))
    if _ENGINE and _ENGINE[0][0] == key:
        return _ENGINE[0][1]
    _ENGINE.clear()  # the previous model goes before the next one loads
    engine = make_engine(cfg.model, cfg.sampling, model_path=model_path)
    _ENGINE.append((key, engine))
    return engine


def progress_bars(desc: str, total: int) -> Callable[..., None]:
    """A tqdm bar per stage: the library's `ProgressFactory` (irpo.tracking)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, dynamic_ncols=True, leave=False)

    def update(n: int = 1, **postfix: Any) -> None:
        bar.update(n)
        if postfix:
            bar.set_postfix(postfix, refresh=False)
        if bar.n >= total:
            bar.close()

    return update


@contextmanager
def sampling_progress(desc: str) -> Iterator[Callable[[Progress], None]]:
    """A tqdm bar over questions, showing generated tokens per second (a new bar per pass)."""
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
