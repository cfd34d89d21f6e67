"""How long answer checking takes: MATH500 x 8 completions per problem, scored by the `math` task.

The completions are derived from each gold answer in 8 formats real models write (the marker,
a `\\boxed{}` fall-back, MetaMath's "The answer is:", simple-evals' "ANSWER:", a GSM8K-style
"####", a marker followed by nothing after a box, a wrong answer, and prose with no answer), so
that every path of the extraction and of the judge (string fast path, part-by-part comparison,
the exact check and Math-Verify in its worker process) is taken. One fresh task (a cold worker,
an empty verdict cache) scores them all under the task's answer mode, then `score_modes` scores
them under both modes as an evaluation does.

Command (one line):
    flock /tmp/irpo-cpu.lock env OMP_NUM_THREADS=1 .venv/bin/python bench/bench_scoring.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from irpo.records import Problem
from irpo.tasks.competition_math import MathTask

REPO = Path(__file__).resolve().parents[1]
FORMATS = 8


def completions(problem: Problem) -> list[str]:
    """8 completions in the formats of the module docstring, derived from the gold answer."""
    gold = " ".join(problem.answer.split())
    return [
        f"We compute the value step by step.\nFinal answer: ${gold}$",
        f"Putting it together, the answer is $\\boxed{{{gold}}}$.",
        f"So we are done.\nThe answer is: {gold}",
        f"Checking the cases gives the result.\n\nANSWER: ${gold}$",
        f"Adding up the parts.\n#### {gold}",
        f"Thus $\\boxed{{{gold}}}$.\nFinal answer:",
        f"A slip in the last step.\nFinal answer: ${gold}+1$",
        "I could not finish the computation in time.",
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--source", default=str(REPO.parent / "shared" / "data" / "math500" / "test.jsonl")
    )
    p.add_argument("--limit", type=int, default=None)
    args = p.parse_args()
    task = MathTask()
    problems = task.load(args.source, "test", limit=args.limit)
    jobs = [(c, problem) for problem in problems for c in completions(problem)]
    started = time.perf_counter()
    verdicts = [task.score(c, problem) for c, problem in jobs]
    one_mode = time.perf_counter() - started
    started = time.perf_counter()
    both = [task.score_modes(c, problem) for c, problem in jobs]
    both_modes = time.perf_counter() - started
    task.judge.close()
    correct = [sum(v.correct for v in verdicts[i::FORMATS]) for i in range(FORMATS)]
    result = {
        "problems": len(problems),
        "completions": len(jobs),
        "score_s": round(one_mode, 2),
        "ms_per_completion": round(1000 * one_mode / len(jobs), 2),
        "score_modes_s": round(both_modes, 2),
        "correct_per_format": correct,
        "strict_parsed": sum(b["strict"].answer is not None for b in both),
        "flexible_parsed": sum(b["flexible"].answer is not None for b in both),
        "judge_timeouts": task.judge.timeouts,
        "python": platform.python_version(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
