"""One exception type for every user mistake.

The command line turns a :class:`LayershareError` into one line on stderr and exit code 2;
anything else is a bug in layershare and keeps its traceback.
"""


class LayershareError(ValueError):
    """A user mistake: bad arguments, a missing path, a corrupted checkpoint."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none):
    libraries' messages of several lines (YAML, transformers) become one."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].endswith(":") and len(lines) > 1:  # "Validation error for field 'x':" + why
        return f"{lines[0]} {lines[1]}"
    return lines[0]
