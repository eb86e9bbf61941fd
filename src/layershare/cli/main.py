"""The ``layershare`` command line: the parser and the one error boundary.

    layershare convert | inspect | merge    (cli/share.py)
    layershare compress                     (cli/compress.py)
    layershare eval                         (cli/evaluate.py)
    layershare train | translate            (cli/train.py)
    layershare generate                     (cli/generate.py)
    layershare data prepare NAME            (cli/data.py)
    layershare eval-speech MODEL --data SET   (cli/speech.py)

Each verb group is one module with ``add_commands(subparsers)``; every verb sets ``func``.
No verb module imports another. A user mistake prints one line on stderr and exits with
status 2; no output directory is left behind (outputs are written to a temporary directory
and renamed into place).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import LayershareError
from . import compress, data, evaluate, generate, share, speech, train

GROUPS = (share, compress, evaluate, train, generate, data, speech)


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


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        from ..formats.hub import quiet_transformers
        quiet_transformers()
        args.func(args)
    except LayershareError as exc:
        print(f"layershare: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layershare: interrupted", file=sys.stderr)
        return 130
    return 0
