"""The report as one self-contained HTML page (report.html): plots embedded as base64 PNGs, inline
CSS, no script, nothing fetched; it opens from disk in any browser.

A run's page holds its settings, held-out accuracy per model with standard errors (and the
seed-to-final gain with its paired interval), the accuracy plot with error bars, the pair
statistics per iteration, the training curves (the paper's Fig. 3 log-probs, smoothed) and a
sample of each iteration's pairs: the prompt, the chosen and the rejected completion side by side,
each with the verifier's verdict and the extracted answer marked. Every text from the run is
escaped (`html.escape`).
"""

from __future__ import annotations

import base64
import html
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from irpo.records import read_json, read_jsonl
from irpo.rundir import IterationDir, RunDir

if TYPE_CHECKING:
    from irpo.report import Row

PAIRS_SHOWN = 20
"""Pairs shown per iteration: one per question, a seeded random choice of the questions."""

GOLD_INDEX = -1

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1150px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #f2f2f2; }
td.text, th.text { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
figure { margin: 0.8em 0; } figcaption { font-size: 0.88em; color: #555; }
table.pairs { width: 100%; table-layout: fixed; }
table.pairs td { text-align: left; }
table.pairs td.prompt { width: 26%; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0.3em 0; font-size: 0.88em;
      font-family: ui-monospace, Menlo, Consolas, monospace; }
mark { background: #ffe066; padding: 0 0.1em; }
.verdict { font-size: 0.8em; font-weight: 600; padding: 0.05em 0.4em; border-radius: 0.3em;
           color: #fff; white-space: nowrap; }
.correct { background: #2b8a3e; } .wrong { background: #c92a2a; }
.unparseable { background: #868e96; } .gold { background: #1864ab; }
.note { color: #555; font-size: 0.9em; }
.gain { background: #f4f8ff; border-left: 4px solid #1864ab; padding: 0.5em 0.8em; }
details { margin: 0.5em 0; } summary { cursor: pointer; font-weight: 600; }
"""


def esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def embed_png(path: Path, alt: str) -> str:
    """An <img> holding the PNG itself (base64), so the page needs no other file."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def figure(path: Path, alt: str, caption: str) -> str:
    if not path.exists():
        return ""
    return f"<figure>{embed_png(path, alt)}<figcaption>{esc(caption)}</figcaption></figure>"


def mark_answer(text: str, answer: str | None) -> str:
    """The escaped text with the last occurrence of `answer` wrapped in <mark> (a whole number or
    word, not a digit inside a longer one, when there is such an occurrence)."""
    if not answer:
        return esc(text)
    hits = list(re.finditer(rf"(?<![\w.]){re.escape(answer)}(?!\w)", text))
    start = hits[-1].start() if hits else text.rfind(answer)
    if start < 0:
        return esc(text)
    end = start + len(answer)
    return f"{esc(text[:start])}<mark>{esc(text[start:end])}</mark>{esc(text[end:])}"


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Side:
    """One completion of a shown pair."""

    text: str
    verdict: str
    """correct, wrong, unparseable, or gold (the gold solution as winner)."""
    answer: str | None
    finish_reason: str | None = None


@dataclass(frozen=True)
class ShownPair:
    problem_id: str
    prompt: str
    chosen: Side
    rejected: Side


def _side(text: str, index: int, sample: dict[str, Any] | None) -> Side:
    if index == GOLD_INDEX:  # the gold's answer is where its "Final answer:" line says
        found = re.findall(r"[Ff]inal answer:\s*(\S+)", text)
        return Side(text, "gold", found[-1].rstrip(".") if found else None)
    if sample is None:
        return Side(text, "unknown", None)
    answer = sample.get("answer")
    correct = sample.get("correct")
    verdict = "unparseable" if answer is None else ("correct" if correct else "wrong")
    return Side(text, verdict, answer, sample.get("finish_reason"))


def pair_sample(it: IterationDir, limit: int = PAIRS_SHOWN, seed: int = 0) -> list[ShownPair]:
    """Up to `limit` pairs of iteration `it`, one per question (its first pair), the questions a
    seeded random choice in file order; verdicts and answers from the iteration's samples."""
    if not it.pairs.exists():
        return []
    first: dict[str, dict[str, Any]] = {}
    for row in read_jsonl(it.pairs):
        first.setdefault(str(row["problem_id"]), row)
    ids = list(first)
    keep = set(random.Random(seed + it.index).sample(ids, min(limit, len(ids))))
    chosen = [first[pid] for pid in ids if pid in keep]
    wanted = {
        (str(p["problem_id"]), int(i))
        for p in chosen
        for i in (p["chosen_index"], p["rejected_index"])
    }
    samples: dict[tuple[str, int], dict[str, Any]] = {}
    if it.samples.exists():
        for s in read_jsonl(it.samples):
            key = (str(s["problem_id"]), int(s["index"]))
            if key in wanted:
                samples[key] = s
    shown = []
    for p in chosen:
        pid = str(p["problem_id"])
        ci, ri = int(p["chosen_index"]), int(p["rejected_index"])
        shown.append(
            ShownPair(
                problem_id=pid,
                prompt=str(p["prompt"]),
                chosen=_side(str(p["chosen"]), ci, samples.get((pid, ci))),
                rejected=_side(str(p["rejected"]), ri, samples.get((pid, ri))),
            )
        )
    return shown


VERDICT_WORDS = {
    "correct": "correct",
    "wrong": "wrong answer",
    "unparseable": "no answer found",
    "gold": "gold solution",
    "unknown": "verdict not recorded",
}


def _side_cell(side: Side) -> str:
    badge = f'<span class="verdict {esc(side.verdict)}">{esc(VERDICT_WORDS[side.verdict])}</span>'
    answer = f" answer <mark>{esc(side.answer)}</mark>" if side.answer is not None else ""
    cut = (
        " <span class='note'>(cut at the token limit)</span>"
        if side.finish_reason == "length"
        else ""
    )
    return f"<td>{badge}{answer}{cut}<pre>{mark_answer(side.text, side.answer)}</pre></td>"


def pairs_table(pairs: Sequence[ShownPair]) -> str:
    rows = [
        "<tr>"
        f'<td class="prompt"><span class="note">{esc(p.problem_id)}</span>'
        f"<pre>{esc(p.prompt)}</pre></td>"
        f"{_side_cell(p.chosen)}{_side_cell(p.rejected)}"
        "</tr>"
        for p in pairs
    ]
    return (
        '<table class="pairs"><thead><tr><th class="text">question (prompt)</th>'
        '<th class="text">chosen</th><th class="text">rejected</th></tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table>"
    )


# --------------------------------------------------------------------------- tables


def _cell(x: Any, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return esc(x)


def _pm(value: float | None, se: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if se is None else f"{value:.1f} &plusmn; {se:.1f}"


def table(head: Sequence[str], rows: Iterable[Sequence[str]], *, text_cols: int = 1) -> str:
    """An HTML table; cells are already escaped HTML, the first `text_cols` columns left-aligned."""

    def cls(i: int) -> str:
        return ' class="text"' if i < text_cols else ""

    th = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def model_name(t: int) -> str:
    return "seed" if t == 0 else f"iter {t}"


def accuracy_table(rows: Sequence[Row], *, with_run: bool = False) -> str:
    """Accuracies in % with their binomial standard errors over the held-out problems."""
    from irpo.report import row_se

    k = max((r.k for r in rows), default=0)
    head = [
        "model",
        "greedy %",
        f"maj@{k} %",
        f"pass@{k} %",
        "parse fail %",
        "held-out problems",
        "trained on",
    ]
    if with_run:
        head = ["run", "method", *head]
    body = []
    for r in rows:
        se = row_se(r)
        cells = [
            model_name(r.model),
            _pm(r.greedy, se["greedy"]),
            _pm(r.maj, se["maj"]) if r.k else "-",
            _pm(r.pass_k, se["pass_k"]) if r.k else "-",
            _cell(r.parse_failures),
            _cell(r.eval_problems),
            _cell(r.pairs if r.pairs is not None else r.train_examples),
        ]
        body.append([esc(r.run), esc(r.method), *cells] if with_run else cells)
    return table([esc(h) for h in head], body, text_cols=3 if with_run else 1)


PAIR_STAT_COLUMNS = (
    ("questions", "questions"),
    ("all_correct", "all correct"),
    ("mixed", "mixed"),
    ("all_wrong", "all wrong"),
    ("unparseable", "no answer in any sample"),
    ("pairs", "pairs"),
    ("gold_winners", "gold winners"),
    ("dropped_duplicates", "dropped: duplicates"),
    ("dropped_too_long", "dropped: too long"),
    ("dropped_cap", "dropped: cap"),
    ("mean_chosen_tokens", "chosen tokens (mean)"),
    ("mean_rejected_tokens", "rejected tokens (mean)"),
)


def pair_stats_table(run: RunDir, iterations: int) -> str:
    body = []
    for t in range(iterations):
        path = run.iteration(t).pair_stats
        if not path.exists():
            continue
        stats = read_json(path)
        body.append([str(t), *(_cell(stats.get(key)) for key, _ in PAIR_STAT_COLUMNS)])
    if not body:
        return ""
    return table(["iteration", *(esc(h) for _, h in PAIR_STAT_COLUMNS)], body, text_cols=0)


# --------------------------------------------------------------------------- pages


def page(title: str, body: Sequence[str]) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


def accuracy_caption(k: int) -> str:
    maj = f"; dashed: maj@{k}" if k else ""
    return (
        f"Held-out accuracy per model (solid: greedy{maj}). Error bars: one binomial standard "
        "error over the held-out problems, sqrt(p(1-p)/n)."
    )


def run_sections(
    run: RunDir,
    rows: Sequence[Row],
    images: dict[str, Path],
    *,
    pairs_shown: int = PAIRS_SHOWN,
    heading: int = 2,
) -> list[str]:
    """The parts of one run's page below its title (also one run's section of a comparison)."""
    from irpo.report import TRAINING_CAPTION, seed_gain_sentence

    config = run.load_config()
    h = f"h{heading}"
    k = max((r.k for r in rows), default=0)
    parts = [f"<{h}>Held-out accuracy</{h}>", accuracy_table(rows)]
    if gain := seed_gain_sentence(run):
        parts.append(f'<p class="gain">{esc(gain)}</p>')
    parts.append(
        '<p class="note">&plusmn; one binomial standard error over the held-out problems, '
        "sqrt(p(1-p)/n).</p>"
    )
    if "accuracy" in images:
        parts.append(figure(images["accuracy"], "held-out accuracy", accuracy_caption(k)))
    stats = pair_stats_table(run, config.loop.iterations)
    if stats:
        parts += [f"<{h}>Pair statistics per iteration</{h}>", stats]
        if "pairs" in images:
            parts.append(
                figure(
                    images["pairs"],
                    "training questions per iteration",
                    "Training questions per iteration: all samples correct, mixed (these give "
                    "pairs), all wrong.",
                )
            )
    if "training" in images and images["training"].exists():
        parts += [
            f"<{h}>Training curves (the paper's Fig. 3: log-probs of chosen and rejected)</{h}>",
            figure(images["training"], "training curves", TRAINING_CAPTION),
        ]
    parts += pair_samples_section(run, config.loop.iterations, pairs_shown, h)
    return parts


def pair_samples_section(run: RunDir, iterations: int, shown: int, h: str) -> list[str]:
    parts: list[str] = []
    for t in range(iterations):
        pairs = pair_sample(run.iteration(t), shown)
        if not pairs:
            continue
        total = run.stage_info(f"iter_{t}/pairs").get("pairs")
        of = f" of {total}" if total is not None else ""
        parts.append(
            f"<details{' open' if not parts else ''}><summary>iteration {t}: {len(pairs)} "
            f"pairs{of}, one per question</summary>{pairs_table(pairs)}</details>"
        )
    if not parts:
        return []
    return [
        f"<{h}>Pairs, a sample per iteration</{h}>",
        '<p class="note">Each row: the prompt, the chosen (winning) and the rejected completion '
        "of one training pair, with the verifier's verdict and the extracted answer "
        "<mark>marked</mark> in the text.</p>",
        *parts,
    ]


def write_run_page(run: RunDir, rows: Sequence[Row], images: dict[str, Path], path: Path) -> Path:
    config = run.load_config()
    settings = (
        f"Method <b>{esc(config.loop.method)}</b>, task <b>{esc(config.task.name)}</b>, model "
        f"<code>{esc(config.model.name_or_path)}</code>, {config.loop.iterations} iteration(s), "
        f"N={config.sampling.num_samples} samples, K={config.pairs.pairs_per_question} pairs, "
        f"beta={config.train.beta}, alpha={config.train.alpha}, "
        f"lr={config.train.learning_rate}, reference={esc(config.loop.reference)}, "
        f"seed={config.seed}."
    )
    body = [f"<h1>Run {esc(run.root.name)}</h1>", f"<p>{settings}</p>"]
    body += run_sections(run, rows, images)
    path.write_text(page(f"irpo report: {run.root.name}", body), encoding="utf-8")
    return path


def write_compare_page(
    runs: dict[str, RunDir],
    tables: dict[str, list[Row]],
    group_rows: Sequence[Sequence[str]],
    images: dict[str, Path],
    path: Path,
) -> Path:
    """The comparison: every run in one table, replicate groups (runs that differ only in
    `seed`) as mean ± s.e. over runs, the accuracy plot, then one collapsed section per run."""
    rows = [r for rs in tables.values() for r in rs]
    k = max((r.k for r in rows), default=0)
    body = [
        "<h1>Comparison</h1>",
        "<h2>Held-out accuracy</h2>",
        accuracy_table(rows, with_run=True),
    ]
    if group_rows:
        body += [
            "<h2>Over seeds</h2>",
            '<p class="note">Runs whose configurations differ only in <code>seed</code>: '
            "mean &plusmn; standard error over the runs.</p>",
            table(
                ["runs", "method", "model", "runs (n)", "greedy %", f"maj@{k} %"],
                group_rows,
                text_cols=3,
            ),
        ]
    if "accuracy" in images:
        body.append(
            figure(
                images["accuracy"],
                "held-out accuracy",
                f"Held-out accuracy per model (solid: greedy{'; dashed: maj@' + str(k) if k else ''}). "
                "Error bars: over several runs that differ only in seed, one standard error "
                "over the runs; for a single run, one binomial standard error over the held-out "
                "problems.",
            )
        )
    for name, run in runs.items():
        run_images = {
            key: images[f"{key}:{name}"]
            for key in ("pairs", "training")
            if f"{key}:{name}" in images
        }
        inner = "\n".join(
            run_sections(run, tables[name], run_images, pairs_shown=PAIRS_SHOWN // 2, heading=3)
        )
        body.append(f"<details><summary>run {esc(name)}</summary>{inner}</details>")
    path.write_text(page("irpo compare", body), encoding="utf-8")
    return path
