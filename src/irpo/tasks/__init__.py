"""Tasks: load problems, render the paper's prompts, score completions.

`get_task(name, **options)` builds a task by name; see docs/TASKS.md for each task's options.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from irpo.errors import IrpoError
from irpo.tasks.base import LoadStats, Task

__all__ = ["TASK_NAMES", "LoadStats", "Task", "get_task"]


def _arith(**options: Any) -> Task:
    from irpo.tasks.arith import ArithTask

    return ArithTask(**options)


_FACTORIES: dict[str, Callable[..., Task]] = {"arith": _arith}
TASK_NAMES = tuple(_FACTORIES)


def get_task(name: str, **options: Any) -> Task:
    """The task called `name`, built with its options (an IrpoError names unknown ones)."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise IrpoError(f"unknown task {name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return factory(**options)
