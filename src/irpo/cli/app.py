"""The `irpo` Typer application and what every command shares: logging, errors, overrides."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import typer

from irpo import preemption
from irpo.errors import IrpoError

app = typer.Typer(
    name="irpo",
    help="Iterative Reasoning Preference Optimization (Pang et al., 2024) for Hugging Face LMs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])

# `irpo --help` lists the commands in these groups, in the order a run uses them.
PANEL_RUN = "Run the method"
PANEL_STAGES = "One stage at a time (what `irpo run` does per iteration)"
PANEL_REPORTS = "Reports and data"


@app.callback()
def _main() -> None:
    """Iterative Reasoning Preference Optimization (Pang et al., 2024) for Hugging Face LMs."""


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass


def command(func: F) -> F:
    """Turn IrpoError into a one-line message and exit status 2 (no traceback); stop at a safe
    point on SIGTERM or SIGINT with exit status 75 (`irpo.preemption`). A command that `irpo
    run` launched first checks that its machine sees the run directory."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from irpo.launch import check_run_dir_from_env

        setup_logging()
        try:
            check_run_dir_from_env()
            with preemption.graceful_stop():
                return func(*args, **kwargs)
        except IrpoError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from None
        except preemption.Preempted as e:
            typer.echo(f"{e}; run the same command again to continue", err=True)
            raise typer.Exit(preemption.EXIT_STATUS) from None

    return wrapper  # type: ignore[return-value]
