"""Load errors that name the file, line, column, field path and what was expected."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["PolicyError", "Problem", "did_you_mean", "format_path"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class PolicyError(Exception):
    """A policy that cannot be loaded. ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(
            sorted(problems, key=lambda p: (p.file, p.line or 0, p.column or 0, p.path))
        )
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def of_file(cls, file: str, message: str) -> PolicyError:
        """A problem with the file as a whole (unreadable, too big, not UTF-8 ...)."""
        return cls([Problem(file=file, line=None, column=None, path="", message=message)])


def format_path(loc: Iterable[str | int]) -> str:
    """('rules', 2, 'if', 'field') -> 'rules[2].if.field'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
