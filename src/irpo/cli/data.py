"""`irpo check-data`: audit a task's data source."""

from __future__ import annotations

from irpo.cli.app import app, command  # noqa: F401
