"""The workbench's console: one ``rich`` console for every message a run prints (quiet on ranks other than 0)."""

from __future__ import annotations

from rich.console import Console

console = Console(highlight=False)
