"""One exception type for every mistake a user can make.

The CLI turns it into a single ``Error: ...`` line and a non-zero exit, so
anything raised as ``HeadbakeError`` must read well on its own.
"""


class HeadbakeError(Exception):
    """A problem with the user's input or environment (not a bug)."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (library errors are often paragraphs)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
