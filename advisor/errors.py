"""User-facing errors: one line, naming the file, the field and the fix.

Everything a user can get wrong (a task file, a data file, a model name) raises `AdvisorError`;
the CLI prints its message and exits 2 without a traceback. Programming errors stay exceptions.
"""

from __future__ import annotations

import re

_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")


MAX_PART = 600  # characters of each part of a message (what is wrong, where, the fix)


def _cap(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 40] + f"... [{len(text) - limit + 40:,} more characters]"


class AdvisorError(Exception):
    """A problem the user can fix; `str(err)` is the whole message."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None):
        # a value echoed into a message (a repr, a path, a library's text) can be megabytes:
        # each part is capped so the line stays a line
        message, where, fix = _cap(message, MAX_PART), _cap(where, MAX_PART), _cap(fix, MAX_PART)
        parts = [f"{where}: {message}" if where else message]
        if fix:
            parts.append(fix)
        text = "; ".join(p.rstrip(".") for p in parts)
        text = _LINE_BREAKS.sub(" ", text)  # one line, always: no newline from a path or a library message
        super().__init__(text if text.endswith(("?", "!")) else text + ".")


class Interrupted(BaseException):
    """Raised when a run is stopped by SIGINT/SIGTERM after finished work was saved.

    A BaseException, like KeyboardInterrupt: libraries' `except Exception` blocks (model
    loading, retries) must not swallow a stop request and carry on.
    """

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by signal {signum}")
