"""The errors a user can meet, each with its exit code.

The CLI turns them into a single ``Error: ...`` line, so anything raised here
must read well on its own. Exit codes (documented in README):

    0   success
    1   a check failed (verify found a difference)
    2   usage error: bad flags, arguments or input files
    3   environment: Hub, network, disk, memory or device problems
    130 interrupted (Ctrl-C / SIGINT)
"""

OK, CHECK_FAILED, USAGE, ENVIRONMENT, INTERRUPTED = 0, 1, 2, 3, 130


class HeadbakeError(Exception):
    """A problem with the user's input (not a bug)."""
    exit_code = USAGE


class EnvironmentProblem(HeadbakeError):
    """The input is fine but the machine or the network is not: Hub, network, disk, memory, device."""
    exit_code = ENVIRONMENT


class CheckFailed(HeadbakeError):
    """A verification ran and found a difference."""
    exit_code = CHECK_FAILED


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's text (library errors are often paragraphs)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__
