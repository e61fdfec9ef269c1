"""Where the host's own commands print: one console for results, one for errors."""

from __future__ import annotations

from rich.console import Console

console = Console()
