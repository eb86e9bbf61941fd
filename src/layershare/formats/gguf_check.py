"""A GGUF file's header, checked before transformers loads it.

transformers (5.x) parses GGUF itself (``integrations/gguf/reader.py``) with
``struct.unpack_from`` over a memory map: a file cut inside its header raises
``struct.error`` (not one of the errors a loader is expected to raise), and a tensor table
whose offsets point past the end of the file is only noticed when that tensor is read.
:func:`check_gguf` parses the header with that same reader -- so what is checked is what
will be loaded -- turns any parse failure into one :class:`LayershareError`, and checks
every tensor's declared byte range against the file's size before anything is allocated.
With an older transformers that lacks the reader, the ``gguf`` package's ``GGUFReader``
(which validates the same ranges as it maps them) does the parsing.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from ..errors import LayershareError, first_line
from .gate import regular_file

_PARSE_ERRORS = (struct.error, ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError,
                 OverflowError, MemoryError)


def check_gguf(path: str | os.PathLike) -> None:
    """Refuse (one line) a GGUF file whose header is truncated or corrupted, or whose
    tensors do not fit inside the file."""
    path = regular_file(path, "GGUF file")
    size = path.stat().st_size
    if size < 24:
        raise LayershareError(f"{path}: not a GGUF file (only {size} bytes; the header alone "
                              "takes 24)")
    try:
        from transformers.integrations.gguf.reader import GgufHeader
    except ImportError:
        return _check_with_gguf_package(path)
    try:
        header = GgufHeader.from_file(str(path))
    except _PARSE_ERRORS as exc:
        raise LayershareError(f"{path}: truncated or corrupted GGUF header "
                              f"({type(exc).__name__}: {first_line(exc)[:160]})") from None
    for info in header.tensors:
        end = header.data_start + info.offset + info.nbytes
        if info.offset < 0 or end > size:
            raise LayershareError(f"{path}: tensor {info.name} declares bytes up to {end}, the "
                                  f"file has {size} (truncated or corrupted)")


def _check_with_gguf_package(path: Path) -> None:
    try:
        from gguf import GGUFReader
    except ImportError:
        raise LayershareError(f"{path}: reading GGUF needs the gguf package; run: pip install "
                              "'layershare[gguf]'") from None
    try:
        GGUFReader(str(path))
    except _PARSE_ERRORS as exc:
        raise LayershareError(f"{path}: truncated or corrupted GGUF file "
                              f"({type(exc).__name__}: {first_line(exc)[:160]})") from None
