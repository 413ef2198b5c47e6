"""User-facing errors: the CLI prints these as one clear message (no traceback) and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input (recipe, data, model path, reward) that the user can fix."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f"\n  hint: {self.hint}" if self.hint else "")


class RecipeError(UserError):
    """An invalid recipe: names the file and the key path."""

    def __init__(self, file: str | None, key: str | None, message: str, hint: str | None = None):
        where = f"{file or '<recipe>'}" + (f": {key}" if key else "")
        super().__init__(f"{where}: {message}", hint)
        self.file, self.key = file, key


class DataError(UserError):
    """Bad data: names the file and row."""


class StageError(UserError):
    """A stage failed for a reason the user can act on."""


def closest(name: str, options: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(str(name), list(options), n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, options: Iterable[str]) -> str:
    options = sorted(set(options))
    best = closest(name, options)
    if best:
        return f"did you mean '{best}'?"
    shown = ", ".join(options[:12]) + (" …" if len(options) > 12 else "")
    return f"valid keys: {shown}"
