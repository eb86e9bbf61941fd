"""One exception type for every user mistake.

The command line turns a :class:`LayershareError` into one line on stderr and exit code 2;
anything else is a bug in layershare and keeps its traceback.
"""


class LayershareError(ValueError):
    """A user mistake: bad arguments, a missing path, a corrupted checkpoint."""
