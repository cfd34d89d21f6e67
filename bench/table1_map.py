"""Where the paper's ordering appears and where it does not: a map of conditions.

bench/table1.py's experiment answers the paper's question at one setting. This script changes
one setting at a time (samples per question N, pairs per question K, beta, the learning rate,
step-checked winners, task difficulty) and asks the same question at each: after one iteration
(the paper's comparison point), from the un-annealed seed model of each of several seeds, is
Iterative RPO ahead of SFT on gold and of STaR on the same 1,000 held-out problems? The
statistics are table1.py's: mean ± standard error over seeds, and each paired difference on the
same problems pooled over seeds with a 95 % paired-bootstrap interval and McNemar's p.

A baseline runs under a condition only when the condition changes what it trains on or how
(the learning rate, the task, its own samples); otherwise its run is the base condition's, the
very same model, since every setting it reads is the same.

    python bench/table1_map.py --out runs/table1-map                  # hours on 2 cores
    python bench/table1_map.py --out runs/map-smoke --smoke            # every path, minutes
    python bench/table1_map.py ... --conditions base k1 --seeds 0 1 2 --eval-limit 1000

It writes docs/CONDITIONS.md (or --doc) after every condition, and the raw results beside it
(results/conditions.csv and .json). A finished run is not redone: re-running resumes.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import table1
from irpo.rundir import RunDir
from irpo.stats import PairedDifference, mean_se
from table1 import Cell, Timings, paired_against_reference, read_cells

SCHEDULE = "constant"  # the un-annealed seed: the one where the methods' order was measurable
METHODS = {"irpo": "IRPO", "sft_gold": "SFT on gold", "star": "STaR"}


@dataclass(frozen=True)
class Condition:
    name: str
    what: str
    overrides: tuple[str, ...]
    baselines: tuple[str, ...]  # the baselines whose training this condition changes


CONDITIONS: tuple[Condition, ...] = (
    Condition("base", "table1.py's setting: N=8, K=4, beta 0.1, lr 2e-5", (), ("sft_gold", "star")),
    Condition("n16", "N=16 samples per question", ("sampling.num_samples=16",), ("star",)),
    Condition("k1", "K=1 pair per question", ("pairs.pairs_per_question=1",), ()),
    Condition("beta0.5", "beta 0.5", ("train.beta=0.5",), ()),
    Condition("lr5e-6", "learning rate 5e-6", ("train.learning_rate=5e-6",), ("sft_gold",)),
    Condition("lr1e-4", "learning rate 1e-4", ("train.learning_rate=1e-4",), ("sft_gold",)),
    Condition(
        "steps",
        "step-checked winners (a right answer by wrong equations is a loser)",
        ("task.options.check_steps=train",),
        ("star",),
    ),
    Condition(
        "steps_n16",
        "step-checked winners and N=16: the two changes that moved IRPO up, together",
        ("task.options.check_steps=train", "sampling.num_samples=16"),
        ("star",),
    ),
    Condition(
        "harder",
        "a harder task: numbers up to 30, 3-4 steps (its own seed models)",
        ("task.options.max_number=30", "task.options.min_steps=3", "task.options.max_steps=4"),
        ("sft_gold", "star"),
    ),
)
BY_NAME = {c.name: c for c in CONDITIONS}


def run_name(condition: str, seed: int, method: str) -> str:
    return f"{condition}-s{seed}-{method}"


def source(condition: Condition, method: str) -> str:
    """The condition whose run stands for `method` under `condition`."""
    return condition.name if method == "irpo" or method in condition.baselines else "base"


def share_seed_eval(run_dir: Path, donor: Path) -> bool:
    """Give a new run the seed model's evaluation samples of an earlier run from the same seed
    model (`donor`), so that its M_0 evaluation resumes with nothing to sample: the same model,
    problems and seeds give the same samples, and the sampling stage refuses files made with
    other settings. Returns whether anything was copied."""
    from irpo.evaluate import eval_sample_paths
    from irpo.sampling.stage import settings_file

    if run_dir.exists() or run_dir == donor:
        return False
    files = [
        f
        for p in eval_sample_paths(RunDir(donor).eval_path(0)).values()
        for f in (p, settings_file(p))
    ]
    if not all(f.exists() for f in files):
        return False
    (run_dir / "evals").mkdir(parents=True)
    for f in files:
        shutil.copy(f, run_dir / "evals" / f.name)
    return True


def cell_name(condition: str, method: str) -> str:
    return f"{condition}:{method}"


# --------------------------------------------------------------------------- tables


def _mean_se(cells: Sequence[Cell], metric: str) -> str:
    values = [getattr(c, f"{metric}_pct") for c in cells if getattr(c, f"{metric}_pct") is not None]
    if not values:
        return "-"
    mean, se = mean_se(values)
    return f"{mean:.1f}" if se is None else f"{mean:.1f} ± {se:.1f}"


def _diff(d: PairedDifference | None) -> str:
    if d is None:
        return "-"
    word = "" if d.real else ", noise"
    return (
        f"{100 * d.difference:+.1f} ({100 * d.low:+.1f} to {100 * d.high:+.1f}; "
        f"p {d.p_value:.2g}{word})"
    )


def map_table(cells: Sequence[Cell], conditions: Sequence[Condition], model: int = 1) -> str:
    """One row per condition: each method's accuracy after `model` iterations (mean ± s.e. over
    seeds) and IRPO minus each baseline, greedy and maj@k, paired over problems and seeds."""
    k = max((c.k for c in cells), default=0)
    head = [
        "condition",
        "seeds",
        "seed model",
        *(f"{label} iter {model}" for label in METHODS.values()),
        "IRPO - SFT on gold, greedy",
        f"IRPO - SFT on gold, maj@{k}",
        "IRPO - STaR, greedy",
        f"IRPO - STaR, maj@{k}",
        "IRPO - IRPO at base, greedy",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cond in conditions:
        mine = [c for c in cells if c.schedule == cond.name]
        if not any(c.variant == cell_name(cond.name, "irpo") and c.model == model for c in mine):
            continue
        of = {m: [c for c in mine if c.variant == cell_name(cond.name, m)] for m in METHODS}
        seeds = sorted({c.seed for c in of["irpo"] if c.model == model})
        row = [
            f"{cond.name}: {cond.what}",
            str(len(seeds)),
            _mean_se([c for c in of["irpo"] if c.model == 0], "greedy"),
            *(_mean_se([c for c in of[m] if c.model == model], "greedy") for m in METHODS),
        ]

        def diff(a: str, b: str, metric: str, pool: Sequence[Cell] = mine) -> str:
            return _diff(paired_against_reference(pool, a, model, metric, b))

        irpo = cell_name(cond.name, "irpo")
        for base in ("sft_gold", "star"):
            for metric in ("greedy", "maj"):
                row.append(diff(irpo, cell_name(cond.name, base), metric))
        if cond.name == "base" or cond.name == "harder":  # harder: another seed model
            row.append("-")
        else:
            base_irpo = [
                Cell(c.schedule, c.seed, "base-irpo", c.model, c.problems, c.greedy, c.maj, c.k)
                for c in cells
                if c.schedule == "base" and c.variant == cell_name("base", "irpo")
            ]
            row.append(diff(irpo, "base-irpo", "greedy", [*mine, *base_irpo]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- running


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/table1-map"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every path in minutes")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    parser.add_argument("--conditions", nargs="+", default=list(BY_NAME), choices=list(BY_NAME))
    parser.add_argument("--eval-limit", type=int, default=None, help="default 1000 (smoke: 40)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--doc", type=Path, default=None, help="default docs/CONDITIONS.md")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([0, 1] if args.smoke else [0, 1, 2])
    args.eval_limit = args.eval_limit or (40 if args.smoke else 1000)
    args.doc = args.doc or (
        args.out / "CONDITIONS.md" if args.smoke else Path("docs/CONDITIONS.md")
    )
    # RESULTS.md's setting (400 questions a round); a later --set of the same key wins
    args.overrides = ["task.train_limit=400", *args.overrides]
    if "base" not in args.conditions:
        args.conditions.insert(0, "base")  # every condition's unchanged baselines are its runs
    args.iterations = 1
    args.schedules = [SCHEDULE]
    return args


def command_line(args: argparse.Namespace) -> str:
    parts = ["python bench/table1_map.py", f"--out {args.out}"]
    if args.smoke:
        parts.append("--smoke")
    parts += [
        "--seeds " + " ".join(map(str, args.seeds)),
        "--conditions " + " ".join(args.conditions),
        f"--eval-limit {args.eval_limit}",
        *(f"--set {o}" for o in args.overrides),
    ]
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    from irpo.cli.app import setup_logging
    from irpo.config import demo_config_path, load_config
    from irpo.errors import IrpoError
    from irpo.loop import run

    args = parse_args(argv)
    setup_logging()
    log = logging.getLogger("table1_map")
    timings = Timings(args.out / "timings.json")
    cells: list[Cell] = []
    failures: dict[str, str] = {}
    for name in args.conditions:
        cond = BY_NAME[name]
        for seed in args.seeds:
            for method in METHODS:
                src = BY_NAME[source(cond, method)]
                run_dir = args.out / "runs" / run_name(src.name, seed, method)
                if src is cond:
                    # the seed model is the base condition's, except where the task changes
                    donor = "harder" if cond.name == "harder" else "base"
                    share_seed_eval(run_dir, args.out / "runs" / run_name(donor, seed, "irpo"))
                    overrides = [
                        *table1.run_overrides(args, SCHEDULE, seed, method),
                        *cond.overrides,
                    ]
                    t0 = time.perf_counter()
                    try:
                        run(load_config(demo_config_path(), overrides), run_dir)
                    except IrpoError as e:
                        failures[run_dir.name] = str(e)
                        log.warning("%s stopped: %s", run_dir.name, e)
                    timings.add(run_dir.name, time.perf_counter() - t0)
                    log.info("%s done (%.0f s of runs so far)", run_dir.name, timings.total())
                for c in read_cells(RunDir(run_dir), cond.name, seed, cell_name(cond.name, method)):
                    cells.append(c)
        write_doc(args, cells, timings, failures)
    log.info("map written to %s", args.doc)


def write_doc(
    args: argparse.Namespace, cells: list[Cell], timings: Timings, failures: dict[str, str]
) -> None:
    rows = [
        {"condition": c.schedule, **r}
        for c, r in zip(cells, table1.raw_rows(cells, {}), strict=True)
    ]
    for r in rows:
        del r["schedule"], r["run_seconds"]
        r["method"] = r["method"].split(":", 1)[1]
    table1.write_raw(rows, args.doc.parent / "results" / "conditions")
    conditions = [BY_NAME[n] for n in args.conditions]
    parts = [
        "# Where the paper's ordering appears: a map of conditions",
        "",
        "Produced by:",
        "",
        f"    {command_line(args)}",
        "",
        f"Machine: {table1.machine()}, {time.strftime('%Y-%m-%d')}. Run time: "
        f"{timings.total() / 60:.1f} min in all (seed models included).",
        "",
        "Each condition changes one setting of [RESULTS.md](RESULTS.md)'s experiment "
        f"(`bench/table1.py --set task.train_limit=400`); every run starts from the un-annealed "
        f"seed model of seed {', '.join(map(str, args.seeds))} and trains one iteration. "
        "Accuracy (%) on the same held-out problems: mean ± standard error over the seeds. "
        "Differences in points, paired on the same problems and pooled over the seeds: the "
        "95 % paired-bootstrap interval and McNemar's exact p; 'noise' where the interval "
        "includes 0. A baseline the condition does not change is the base condition's run. "
        "Raw results: [results/conditions.csv](results/conditions.csv), "
        "[results/conditions.json](results/conditions.json).",
        "",
        map_table(cells, conditions),
    ]
    if failures:
        parts += ["Runs that stopped:", "", *(f"- `{n}`: {why}" for n, why in failures.items())]
        parts.append("")
    table1.write_keeping_reading(args.doc, "\n".join(parts))


if __name__ == "__main__":
    main()
