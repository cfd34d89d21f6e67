"""Tasks: load problems, render the paper's prompts, score completions.

`get_task(name, **options)` builds a task by name; see docs/TASKS.md for each task's options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from irpo.errors import IrpoError
from irpo.tasks.base import LoadStats, Task

__all__ = ["TASK_NAMES", "LoadStats", "Task", "get_task"]


def _gsm8k(**options: Any) -> Task:
    from irpo.tasks.gsm8k import GSM8KTask

    return GSM8KTask(**options)


def _arc_challenge(**options: Any) -> Task:
    from irpo.tasks.arc_challenge import ArcChallengeTask

    return ArcChallengeTask(**options)


def _math(**options: Any) -> Task:
    from irpo.tasks.competition_math import MathTask

    return MathTask(**options)


def _arith(**options: Any) -> Task:
    from irpo.tasks.arith import ArithTask

    return ArithTask(**options)


def _custom(**options: Any) -> Task:
    from irpo.tasks.custom import CustomTask

    return CustomTask(**options)


# Factories import their module when called, so `import irpo.tasks` stays light.
_FACTORIES: dict[str, Callable[..., Task]] = {
    "gsm8k": _gsm8k,
    "arc_challenge": _arc_challenge,
    "math": _math,
    "arith": _arith,
    "custom": _custom,
}
TASK_NAMES = tuple(_FACTORIES)


def get_task(name: str, **options: Any) -> Task:
    """The task called `name`, built with its options (an IrpoError names unknown ones)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise IrpoError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return factory(**options)
