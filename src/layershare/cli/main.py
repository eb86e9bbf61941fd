"""The ``layershare`` command line: the parser and the one error boundary.

    layershare convert | inspect | merge    (cli/share.py)
    layershare compress                     (cli/compress.py)
    layershare eval                         (cli/evaluate.py)
    layershare train | translate            (cli/train.py)
    layershare distill STUDENT --teacher SRC  (cli/distill.py)
    layershare generate                     (cli/generate.py)
    layershare export                       (cli/export.py)
    layershare data prepare NAME            (cli/data.py)
    layershare eval-speech MODEL --data SET   (cli/speech.py)

Each verb group is one module with ``add_commands(subparsers)``; every verb sets ``func``.
No verb module imports another. Outputs follow :mod:`layershare.outputs` (a file, the source
or a foreign directory is never replaced; writes go to a temporary sibling renamed into
place).

The error boundary: a user mistake -- a :class:`LayershareError`, raised where it is found,
or one of :func:`expected_errors` that escaped conversion there (file-system errors,
safetensors and unpickling errors, YAML and text-decoding errors) -- prints ONE line on stderr
(``layershare: error: ...``, the first line of the message) and exits with status 2. Anything
else is a bug in layershare and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import LayershareError, first_line
from . import compress, data, distill, evaluate, export, generate, share, speech, train

GROUPS = (share, compress, evaluate, train, distill, generate, export, data, speech)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise LayershareError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="layershare",
                     description="Smaller Transformers by sharing weights across layers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in GROUPS:
        group.add_commands(sub)
    return parser


def expected_errors() -> tuple[type[BaseException], ...]:
    """The kinds of failure that come from the user's files and disks, not from bugs."""
    from pickle import UnpicklingError

    import yaml
    from safetensors import SafetensorError
    return (LayershareError, OSError, SafetensorError, UnpicklingError, yaml.YAMLError,
            UnicodeDecodeError)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, LayershareError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return first_line(exc)


def main(argv: list[str] | None = None) -> int:
    expected = (LayershareError,)
    try:
        expected = expected_errors()
        args = build_parser().parse_args(argv)
        from ..formats.hub import quiet_transformers
        quiet_transformers()
        args.func(args)
    except expected as exc:
        print(f"layershare: error: {_describe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layershare: interrupted", file=sys.stderr)
        return 130
    return 0
