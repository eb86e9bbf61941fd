"""Data verbs: ``layershare data prepare NAME [--dir DATA_DIR] [--force]``."""

from __future__ import annotations

from .common import out_arg


def add_commands(sub) -> None:
    """Register ``data prepare`` on an ``add_subparsers`` object."""
    p = sub.add_parser("data", help="data recipes")
    data_sub = p.add_subparsers(dest="data_command", metavar="prepare", required=True,
                                parser_class=type(p))
    q = data_sub.add_parser("prepare", help="fetch, clean and split a recipe (no-op if ready)")
    q.add_argument("name", help="brown | libreoffice-de-en | debian-summaries | "
                                 "wordnet-supersense | espeak-en | espeak-asr | librivox")
    q.add_argument("--dir", type=out_arg, default=None,
                   help="data directory (default $LAYERSHARE_DATA or ./data)")
    q.add_argument("--force", action="store_true", help="rebuild even when ready")
    q.add_argument("--hours", type=float, default=None,
                   help="espeak-asr: hours of training audio to speak (default 20)")
    q.add_argument("--quiet", action="store_true", help="no progress messages")
    q.set_defaults(func=cmd_data_prepare)


def cmd_data_prepare(args) -> None:
    from ..data import prepare
    prepare(args.name, args.dir, progress=not args.quiet, force=args.force,
            options={"hours": args.hours})
