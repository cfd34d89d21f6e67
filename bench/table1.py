"""The paper's Table 1 in miniature, on the built-in `arith` task, over several seed models.

From each of several seed models (`seed` 0, 1, 2, ...: each trained from scratch once, then
cached), for both seed schedules (un-annealed: a constant learning rate stopped mid-training, the
demo's; annealed: a cosine decay to zero), every method runs the same number of iterations with
the same sampling budget per iteration: SFT on gold solutions, STaR, DPO, Iterative RPO, and
Iterative RPO with the gold solutions as winners too (the paper's GSM8K setting). Every model is
evaluated on the same held-out problems (the arith test split does not depend on `seed`).

It writes, beside the document (`--doc`): the raw results, one row per evaluated model
(results/table1.csv and .json), and a Markdown document with, per seed schedule, the mean and
standard error over seeds of every cell, and each method's paired difference against IRPO on the
same problems (pooled over seeds) with a 95 % paired-bootstrap interval, McNemar's exact
p-value and a word saying whether it is real (the interval excludes 0). Each schedule's runs
also get a comparison page (`irpo compare`: COMPARE.md and report.html) under OUT.

    python bench/table1.py --out runs/table1                 # the experiment (hours on 2 cores)
    python bench/table1.py --out runs/table1-smoke --smoke   # every path, tiny sizes (minutes)
    python bench/table1.py ... --seeds 0 1 2 --schedules constant cosine --iterations 3
                               --eval-limit 1000 --methods irpo star --set key=value ...

A finished run is not redone: re-running the command resumes and rebuilds the tables.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irpo.records import read_json
from irpo.rundir import RunDir
from irpo.stats import PairedDifference, mean_se, paired_difference, verdict


@dataclass(frozen=True)
class Variant:
    label: str
    overrides: tuple[str, ...]


VARIANTS: dict[str, Variant] = {  # Table 1's columns, in its order, then the gold-winner setting
    "sft_gold": Variant("SFT on gold", ("loop.method=sft_gold",)),
    "star": Variant("STaR", ("loop.method=star",)),
    "dpo": Variant("DPO", ("loop.method=dpo",)),
    "irpo": Variant("IRPO", ("loop.method=irpo",)),
    "irpo_gold": Variant("IRPO, gold winners", ("loop.method=irpo", "pairs.gold_as_winner=always")),
}
REFERENCE = "irpo"

SCHEDULES = {
    "constant": "un-annealed seed (constant learning rate, stopped mid-training: the demo's)",
    "cosine": "annealed seed (cosine decay to zero)",
}

PRETRAINED_NOTE = (
    "A released pretrained or chat checkpoint (the paper's Llama-2-70B-Chat, SmolLM2) finished "
    "its training on a decaying learning rate: it resembles the annealed seed, not the demo's "
    "un-annealed one."
)

SMOKE_OVERRIDES = (  # a weak seed model (a few % greedy): every path, no meaningful numbers
    "seed_model.steps=40",
    "seed_model.train_problems=800",
    "seed_model.warmup_steps=5",
    "task.train_limit=24",
    "sampling.num_samples=4",
    "pairs.pairs_per_question=2",
    "eval.maj_k=2",
    "train.batch_size=8",
    "train.micro_batch_size=8",
)


def run_name(schedule: str, seed: int, variant: str) -> str:
    return f"{schedule}-s{seed}-{variant}"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Cell:
    """One evaluated model of one run: which problems it got right, greedy and by majority."""

    schedule: str
    seed: int
    variant: str
    model: int
    problems: tuple[str, ...]
    greedy: tuple[bool, ...]
    maj: tuple[bool, ...] | None
    k: int

    @property
    def greedy_pct(self) -> float:
        return 100.0 * sum(self.greedy) / len(self.greedy)

    @property
    def maj_pct(self) -> float | None:
        return None if self.maj is None else 100.0 * sum(self.maj) / len(self.maj)


def read_cells(run: RunDir, schedule: str, seed: int, variant: str) -> list[Cell]:
    """The evaluated models of one run, from its eval files' per-question results."""
    cells = []
    for t in range(run.load_config().loop.iterations + 1):
        path = run.eval_path(t)
        if not path.exists():
            continue
        ev = read_json(path)
        qs = [q for q in ev.get("per_question") or [] if q.get("greedy_correct") is not None]
        if not qs:
            continue
        has_maj = all(q.get("maj_correct") is not None for q in qs) and int(ev.get("k") or 0) > 0
        cells.append(
            Cell(
                schedule=schedule,
                seed=seed,
                variant=variant,
                model=t,
                problems=tuple(str(q["problem_id"]) for q in qs),
                greedy=tuple(bool(q["greedy_correct"]) for q in qs),
                maj=tuple(bool(q["maj_correct"]) for q in qs) if has_maj else None,
                k=int(ev.get("k") or 0) if has_maj else 0,
            )
        )
    return cells


def raw_rows(cells: Sequence[Cell], seconds: dict[str, float]) -> list[dict[str, Any]]:
    """One row per evaluated model: the raw table written as CSV and JSON."""
    return [
        {
            "schedule": c.schedule,
            "seed": c.seed,
            "method": c.variant,
            "model": c.model,
            "greedy": round(c.greedy_pct, 2),
            "maj": None if c.maj_pct is None else round(c.maj_pct, 2),
            "k": c.k,
            "problems": len(c.problems),
            "run_seconds": round(seconds[run_name(c.schedule, c.seed, c.variant)], 1)
            if run_name(c.schedule, c.seed, c.variant) in seconds
            else None,
        }
        for c in cells
    ]


def write_raw(rows: list[dict[str, Any]], stem: Path) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    with stem.with_suffix(".csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["schedule"])
        writer.writeheader()
        writer.writerows(rows)


# --------------------------------------------------------------------------- tables


def _mean_se_cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean, se = mean_se(values)
    return f"{mean:.1f}" if se is None else f"{mean:.1f} ± {se:.1f}"


def _aligned(
    cells: dict[int, Cell], ref: dict[int, Cell], metric: str
) -> tuple[list[list[bool]], list[list[bool]]] | None:
    """Per seed, the method's and the reference's correctness on the problems both were
    evaluated on (in the reference's order); None when a metric or a seed is missing."""
    seeds = sorted(cells.keys() & ref.keys())
    if not seeds:
        return None
    a, b = [], []
    for s in seeds:
        x, y = getattr(cells[s], metric), getattr(ref[s], metric)
        if x is None or y is None:
            return None
        mine = dict(zip(cells[s].problems, x, strict=True))
        common = [(mine[p], v) for p, v in zip(ref[s].problems, y, strict=True) if p in mine]
        a.append([m for m, _ in common])
        b.append([r for _, r in common])
    if len({len(r) for r in a}) != 1 or not a[0]:
        return None
    return a, b


def paired_against_reference(
    cells: Sequence[Cell], variant: str, model: int, metric: str, reference: str = REFERENCE
) -> PairedDifference | None:
    """`variant` minus the reference method at model `model` (greedy or maj), paired over the
    same problems and pooled over the seeds both were run from."""
    by = {
        v: {c.seed: c for c in cells if c.variant == v and c.model == model}
        for v in (variant, reference)
    }
    aligned = _aligned(by[variant], by[reference], metric)
    if aligned is None:
        return None
    return paired_difference(*aligned, seed=model)


def _pts(d: PairedDifference | None) -> tuple[str, str]:
    if d is None:
        return "-", "-"
    return f"{100 * d.difference:+.1f}", f"{100 * d.low:+.1f} to {100 * d.high:+.1f}"


def _word(d: PairedDifference | None, label: str, ref_label: str) -> str:
    if d is None:
        return "-"
    if not d.real:
        return "noise"
    return f"{label} ahead" if d.difference > 0 else f"{ref_label} ahead"


def schedule_tables(cells: Sequence[Cell], schedule: str, reference: str = REFERENCE) -> str:
    """The Markdown for one seed schedule: mean ± s.e. over seeds per cell, then the paired
    differences against the reference method, with their sentences."""
    mine = [c for c in cells if c.schedule == schedule]
    if not mine:
        return ""
    parts = [accuracy_table(mine)]
    if any(c.variant == reference for c in mine):
        parts.append(differences_table(mine, reference))
    return "\n".join(parts)


def _variants(cells: Sequence[Cell]) -> list[str]:
    return [v for v in VARIANTS if any(c.variant == v for c in cells)]


def accuracy_table(cells: Sequence[Cell]) -> str:
    """Greedy accuracy per method and model (and maj@k of the last model): mean ± s.e. over
    seeds."""
    models = sorted({c.model for c in cells})
    last = models[-1]
    k = max(c.k for c in cells)
    seeds = sorted({c.seed for c in cells})
    problems = max(len(c.problems) for c in cells)
    head = ["method", *("seed" if t == 0 else f"iter {t}" for t in models)]
    if k:
        head.append(f"iter {last} maj@{k}" if last else f"seed maj@{k}")
    lines = [
        f"Greedy accuracy (%) on {problems} held-out problems, mean ± standard error over "
        f"{len(seeds)} seed models (seeds {', '.join(map(str, seeds))})"
        + (f"; the last column maj@{k}." if k else "."),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for v in _variants(cells):
        of = [c for c in cells if c.variant == v]
        row = [VARIANTS[v].label]
        row += [_mean_se_cell([c.greedy_pct for c in of if c.model == t]) for t in models]
        if k:
            maj = [c.maj_pct for c in of if c.model == last and c.maj_pct is not None]
            row.append(_mean_se_cell(maj))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def differences_table(cells: Sequence[Cell], reference: str = REFERENCE) -> str:
    """Each method minus the reference at every trained model, greedy and maj@k, with the
    sentences of round 1 and of the last round."""
    models = [t for t in sorted({c.model for c in cells}) if t > 0]  # the seed: no difference
    k = max(c.k for c in cells)
    ref_label = VARIANTS[reference].label
    lines = [
        f"Each method minus {ref_label} on the same problems, in points, pooled over the seeds "
        "(95 % paired-bootstrap interval over problems; McNemar's exact test on the pooled "
        "pairs). A difference is real when its interval excludes 0.",
        "",
        "| method | model | greedy | 95 % interval | McNemar p |"
        + (f" maj@{k} | 95 % interval | McNemar p |" if k else "")
        + " reading |",
        "|---|---|---|---|---|" + ("---|---|---|" if k else "") + "---|",
    ]
    sentences = []
    for v in _variants(cells):
        if v == reference:
            continue
        label = VARIANTS[v].label
        for t in models:
            g = paired_against_reference(cells, v, t, "greedy", reference)
            row = [label, f"iter {t}", *_pts(g), _p(g)]
            words = f"greedy: {_word(g, label, ref_label)}"
            if k:
                m = paired_against_reference(cells, v, t, "maj", reference)
                row += [*_pts(m), _p(m)]
                words += f"; maj@{k}: {_word(m, label, ref_label)}"
            lines.append("| " + " | ".join([*row, words]) + " |")
            if g is not None and t in (1, models[-1]):
                sentences.append(f"- iter {t}, greedy: {verdict(g, label, ref_label)}.")
    return "\n".join([*lines, "", *sentences]) + "\n"


def _p(d: PairedDifference | None) -> str:
    return "-" if d is None else f"{d.p_value:.2g}"


def trend_table(run_dirs: dict[str, Path]) -> str:
    """Mean policy log-prob of the chosen responses over the first and the last tenth of each
    iteration's steps (the paper's Fig. 3), averaged over seeds, for the preference methods."""
    acc: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    for name, d in run_dirs.items():
        schedule, _, variant = name.split("-", 2)
        for t, first, last in chosen_logp_trend(d):
            acc.setdefault((schedule, variant, t), []).append((first, last))
    if not acc:
        return ""
    lines = [
        "| seed schedule | method | iteration | first steps | last steps | trend |",
        "|---|---|---|---|---|---|",
    ]
    for (schedule, variant, t), vals in sorted(acc.items()):
        first = sum(f for f, _ in vals) / len(vals)
        last = sum(e for _, e in vals) / len(vals)
        lines.append(
            f"| {schedule} | {VARIANTS[variant].label} | {t} | {first:.2f} | {last:.2f} | "
            f"{'rises' if last > first else 'falls'} |"
        )
    return "\n".join(lines) + "\n"


def chosen_logp_trend(run_dir: Path) -> list[tuple[int, float, float]]:
    """(iteration, first, last) mean policy log-prob of the chosen responses during training."""
    rows = [m for m in RunDir(run_dir).metrics() if m.get("stage") == "train_step"]
    out = []
    for t in sorted({m["iteration"] for m in rows}):
        vals = [
            m["policy_chosen_logps"]
            for m in rows
            if m["iteration"] == t and "policy_chosen_logps" in m
        ]
        if len(vals) >= 2:
            k = max(1, len(vals) // 10)  # average the first and last tenth: single steps are noisy
            out.append((t, sum(vals[:k]) / k, sum(vals[-k:]) / k))
    return out


# --------------------------------------------------------------------------- running


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("runs/table1"))
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: every path in minutes")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (smoke: 0 1)"
    )
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--iterations", type=int, default=None, help="default 3 (smoke: 1)")
    parser.add_argument("--eval-limit", type=int, default=None, help="default 1000 (smoke: 40)")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--doc", type=Path, default=None, help="default docs/RESULTS.md (smoke: OUT/RESULTS.md)"
    )
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([0, 1] if args.smoke else [0, 1, 2])
    args.iterations = args.iterations or (1 if args.smoke else 3)
    args.eval_limit = args.eval_limit or (40 if args.smoke else 1000)
    args.doc = args.doc or (args.out / "RESULTS.md" if args.smoke else Path("docs/RESULTS.md"))
    return args


def run_overrides(args: argparse.Namespace, schedule: str, seed: int, variant: str) -> list[str]:
    return [
        # the test split holds 5,000 problems (arith's default is 500), the train split its
        # default 5,000, so that >= 1,000 held-out problems exist
        "task.options.size=5000",
        f"task.eval_limit={args.eval_limit}",
        *(SMOKE_OVERRIDES if args.smoke else ()),
        *args.overrides,
        f"seed={seed}",
        f"seed_model.schedule={schedule}",
        f"loop.iterations={args.iterations}",
        *VARIANTS[variant].overrides,
    ]


def main(argv: Sequence[str] | None = None) -> None:
    from irpo.cli.app import setup_logging
    from irpo.config import demo_config_path, load_config
    from irpo.errors import IrpoError
    from irpo.loop import run
    from irpo.report import compare

    args = parse_args(argv)
    setup_logging()
    log = logging.getLogger("table1")
    start = time.perf_counter()
    timings = Timings(args.out / "timings.json")
    ran = 0.0  # seconds of this invocation spent in runs
    failures: dict[str, str] = {}
    run_dirs: dict[str, Path] = {}
    cells: list[Cell] = []
    for schedule in args.schedules:
        for seed in args.seeds:
            for variant in args.methods:
                name = run_name(schedule, seed, variant)
                cfg = load_config(demo_config_path(), run_overrides(args, schedule, seed, variant))
                t0 = time.perf_counter()
                try:
                    run(cfg, args.out / "runs" / name)
                except IrpoError as e:  # e.g. no correct sample to train STaR on: a result too
                    failures[name] = str(e)
                    log.warning("%s stopped: %s", name, e)
                ran += (took := time.perf_counter() - t0)
                timings.add(name, took)
                run_dirs[name] = args.out / "runs" / name
                cells += read_cells(RunDir(run_dirs[name]), schedule, seed, variant)
                log.info("%s done in %.0fs (%.0fs so far)", name, took, _since(start))
        names = [n for n in run_dirs if n.startswith(f"{schedule}-")]
        compare([run_dirs[n] for n in names], args.out / f"compare-{schedule}")
    timings.add(Timings.OTHER, _since(start) - ran)
    seconds = {n: timings.seconds[n] for n in run_dirs}
    total = timings.total()
    write_doc(args, cells, run_dirs, seconds, total, failures)
    log.info("table written to %s in %.1f min", args.doc, total / 60)


class Timings:
    """Seconds per run, accumulated over invocations of the script (OUT/timings.json), so that
    the tables a re-run rebuilds still say what each run cost: a re-run that finds a run
    finished adds the moment it takes to see so. OTHER: what was no run's (comparisons,
    tables)."""

    OTHER = "_other"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = (
            json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        )

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.seconds, indent=1) + "\n", encoding="utf-8")

    def total(self) -> float:
        return sum(self.seconds.values())


def _since(start: float) -> float:
    return time.perf_counter() - start


def machine() -> str:
    """The CPU model and the flags that decide its number formats, cores, threads, Python."""
    from irpo.precision import cpu_info

    cpu, flags = cpu_info()
    shown = [
        f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in (flags or "").split()
    ]
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    return (
        f"{cpu or platform.machine()} ({', '.join(shown) or 'no AVX2'}), {os.cpu_count()} CPUs, "
        f"torch threads {threads}, Python {sys.version.split()[0]}"
    )


def command_line(args: argparse.Namespace) -> str:
    parts = ["python bench/table1.py", f"--out {args.out}"]
    if args.smoke:
        parts.append("--smoke")
    parts += [
        "--seeds " + " ".join(map(str, args.seeds)),
        "--schedules " + " ".join(args.schedules),
        f"--iterations {args.iterations}",
        f"--eval-limit {args.eval_limit}",
    ]
    if list(args.methods) != list(VARIANTS):
        parts.append("--methods " + " ".join(args.methods))
    parts += [f"--set {o}" for o in args.overrides]
    return " ".join(parts)


def write_doc(
    args: argparse.Namespace,
    cells: list[Cell],
    run_dirs: dict[str, Path],
    seconds: dict[str, float],
    total: float,
    failures: dict[str, str],
) -> None:
    results = args.doc.parent / "results"
    write_raw(raw_rows(cells, seconds), results / "table1")
    for schedule in args.schedules:
        png = args.out / f"compare-{schedule}" / "accuracy.png"
        if png.exists():
            shutil.copy(png, results / f"accuracy-{schedule}.png")
    cfg = RunDir(next(iter(run_dirs.values()))).load_config()
    per_variant = {
        v: sum(s for n, s in seconds.items() if n.endswith(f"-{v}")) / 60 for v in args.methods
    }
    parts = [
        "# Results: the paper's Table 1 in miniature",
        "",
        "Produced by:",
        "",
        f"    {command_line(args)}",
        "",
        f"Machine: {machine()}. Wall time: {total / 60:.1f} min in all ("
        + ", ".join(f"{VARIANTS[v].label} {m:.1f} min" for v, m in per_variant.items())
        + ", over every seed and schedule, seed models included in the first method's).",
        "",
        f"Setup: the demo configuration (`configs/demo.yaml`) with the overrides in the command: "
        f"task `{cfg.task.name}`, {cfg.task.train_limit} training questions x "
        f"N={cfg.sampling.num_samples} samples per iteration at T={cfg.sampling.temperature}, "
        f"K={cfg.pairs.pairs_per_question} pairs per question, beta={cfg.train.beta}, "
        f"alpha={cfg.train.alpha}, lr={cfg.train.learning_rate}, batch {cfg.train.batch_size}, "
        f"{args.iterations} iteration(s), {cfg.task.eval_limit} held-out problems, the same for "
        "every method and seed. Every method of a seed starts from the same seed model and, "
        "where it samples, sees the same samples budget. Raw results, one row per evaluated "
        "model: [results/table1.csv](results/table1.csv), "
        "[results/table1.json](results/table1.json).",
        "",
        PRETRAINED_NOTE,
        "",
    ]
    for schedule in args.schedules:
        parts += [
            f"## From the {SCHEDULES[schedule]}",
            "",
            schedule_tables(cells, schedule),
            f"![accuracy](results/accuracy-{schedule}.png)",
            "",
        ]
    if failures:
        parts += [
            "Runs that stopped before their last iteration (their later cells are missing):",
            "",
            *(f"- `{name}`: {why}" for name, why in failures.items()),
            "",
        ]
    if trend := trend_table(run_dirs):
        parts += ["## Chosen log-probability during training (the paper's Fig. 3)", "", trend]
    write_keeping_reading(args.doc, "\n".join(parts))


def write_keeping_reading(doc: Path, text: str) -> None:
    """Write a generated document; its hand-written "## Reading" section and what follows it,
    if `doc` has one, survive a re-run of the script."""
    if doc.exists() and "\n## Reading" in (old := doc.read_text(encoding="utf-8")):
        text += "\n## Reading" + old.split("\n## Reading", 1)[1]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
