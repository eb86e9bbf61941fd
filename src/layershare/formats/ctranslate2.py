"""Reading (and, for tests, writing) CTranslate2's ``model.bin``: a flat list of named arrays.

The layout, learnt from CTranslate2's writer (``python/ctranslate2/specs/model_spec.py``,
``ModelSpec._serialize``) and loader (``src/models/model.cc``, ``Model::load``); all integers
little-endian, a *string* is a ``u16`` byte count (including a final NUL), the UTF-8 bytes
and the NUL:

    u32 binary_version                    (1..6 are known; 6 is current)
    string spec_name, u32 spec_revision   (version >= 2)
    u32 n_variables, then per variable:
        string name, u8 rank, rank x u32 dims,
        u8 dtype_id, u32 n_bytes          (version >= 4; dtype ids below)
        u8 item_size, u32 n_items         (version <= 3; the dtype follows from the size)
        n_bytes of row-major data
    u32 n_aliases, then (string alias, string target) pairs   (version >= 3)

Nothing in the file is executed or unpickled: the reader only slices bytes into numpy arrays
of the six declared dtypes, and every count is checked against the bytes that remain, so a
truncated or corrupted file is one clear :class:`LayershareError`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LayershareError

CURRENT_VERSION = 6
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_BY_ITEM_SIZE = {4: "float32", 1: "int8", 2: "int16"}  # binary versions <= 3
_MAX_RANK = 8


@dataclass(frozen=True)
class Variable:
    """One named array of a CTranslate2 model: its shape, dtype name and raw bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    data: bytes = field(repr=False)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def array(self) -> np.ndarray:
        """The values as a numpy array (bfloat16 widened to float32, which numpy lacks)."""
        if self.dtype == "bfloat16":
            raw = np.frombuffer(self.data, dtype="<u2").astype(np.uint32) << 16
            return raw.view(np.float32).reshape(self.shape)
        little_endian = np.dtype(self.dtype).newbyteorder("<")
        return np.frombuffer(self.data, dtype=little_endian).reshape(self.shape)

    def scalar(self):
        """The value of a rank-0 variable (model options such as ``num_heads``)."""
        if self.rank != 0:
            raise LayershareError(f"{self.name}: expected a scalar, has shape {self.shape}")
        return self.array().item()


@dataclass
class CT2Model:
    """The contents of a ``model.bin``: spec name and revision, variables, aliases."""

    version: int
    spec: str
    revision: int
    variables: dict[str, Variable]
    aliases: dict[str, str]

    def get(self, name: str) -> Variable:
        """A variable by name, following an alias (``decoder/projection/weight`` ->
        ``decoder/embeddings/weight`` when the output head is tied)."""
        target = self.aliases.get(name, name)
        try:
            return self.variables[target]
        except KeyError:
            raise LayershareError(f"CTranslate2 model has no variable {name!r}") from None


class _Reader:
    def __init__(self, data: bytes, path: str):
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise LayershareError(f"{self.path}: truncated CTranslate2 file ({what} needs {n} "
                                  f"bytes at offset {self.pos}, the file has {len(self.data)})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def string(self, what: str) -> str:
        (n,) = self.unpack("H", what)
        raw = self.take(n, what)
        if n == 0 or raw[-1] != 0:
            raise LayershareError(f"{self.path}: corrupted CTranslate2 file ({what} is not a "
                                  f"NUL-terminated string at offset {self.pos - n})")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise LayershareError(f"{self.path}: corrupted CTranslate2 file ({what} is not "
                                  "UTF-8)") from None


def read_model(path: str | os.PathLike) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (or a directory holding one); see the module doc."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LayershareError(f"{path}: no such file") from None
    except OSError as exc:
        raise LayershareError(f"{path}: cannot read ({exc})") from None
    r = _Reader(data, str(path))
    if len(data) < 4:
        raise LayershareError(f"{path}: not a CTranslate2 model (only {len(data)} bytes)")
    (version,) = r.unpack("I", "binary version")
    if not 1 <= version <= CURRENT_VERSION:
        raise LayershareError(f"{path}: not a CTranslate2 model, or a newer one (binary version "
                              f"{version}; this reader knows 1..{CURRENT_VERSION})")
    spec, revision = "", 1
    if version >= 2:
        spec = r.string("spec name")
        (revision,) = r.unpack("I", "spec revision")
    (count,) = r.unpack("I", "variable count")
    variables: dict[str, Variable] = {}
    for i in range(count):
        name = r.string(f"name of variable {i}")
        (rank,) = r.unpack("B", f"rank of {name}")
        if rank > _MAX_RANK:
            raise LayershareError(f"{path}: corrupted CTranslate2 file ({name} has rank {rank})")
        shape = r.unpack(f"{rank}I", f"shape of {name}")
        if version >= 4:
            type_id, n_bytes = r.unpack("BI", f"dtype of {name}")
            if type_id >= len(DTYPES):
                raise LayershareError(f"{path}: corrupted CTranslate2 file ({name} has unknown "
                                      f"dtype id {type_id})")
            dtype = DTYPES[type_id]
        else:
            item_size, n_items = r.unpack("BI", f"dtype of {name}")
            if item_size not in _BY_ITEM_SIZE:
                raise LayershareError(f"{path}: corrupted CTranslate2 file ({name} has item "
                                      f"size {item_size})")
            dtype, n_bytes = _BY_ITEM_SIZE[item_size], n_items * item_size
        expected = int(np.prod(shape, dtype=np.int64)) * np.dtype(
            "uint16" if dtype == "bfloat16" else dtype).itemsize
        if n_bytes != expected:
            raise LayershareError(f"{path}: corrupted CTranslate2 file ({name}: {n_bytes} bytes "
                                  f"for shape {tuple(shape)} of {dtype})")
        if name in variables:
            raise LayershareError(f"{path}: corrupted CTranslate2 file ({name} appears twice)")
        variables[name] = Variable(name, tuple(shape), dtype, r.take(n_bytes, f"data of {name}"))
    aliases: dict[str, str] = {}
    if version >= 3:
        (n_aliases,) = r.unpack("I", "alias count")
        for i in range(n_aliases):
            alias, target = r.string(f"alias {i}"), r.string(f"target of alias {i}")
            if target not in variables:
                raise LayershareError(f"{path}: corrupted CTranslate2 file (alias {alias} names "
                                      f"the unknown variable {target})")
            aliases[alias] = target
    if r.pos != len(data):
        raise LayershareError(f"{path}: corrupted CTranslate2 file ({len(data) - r.pos} bytes "
                              "after the last record)")
    return CT2Model(version, spec, revision, variables, aliases)


def write_model(path: str | os.PathLike, spec: str, variables: dict[str, np.ndarray],
                aliases: dict[str, str] | None = None, revision: int = 1) -> Path:
    """Write arrays as a current-version ``model.bin`` (the layout above; tests and tools)."""

    def string(text: str) -> bytes:
        raw = text.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", CURRENT_VERSION), string(spec), struct.pack("<II", revision,
                                                                          len(variables))]
    for name, value in sorted(variables.items()):
        value = np.asarray(value)  # 0-d stays 0-d (ascontiguousarray would make it 1-d)
        if value.dtype.name not in DTYPES:
            raise LayershareError(f"{name}: dtype {value.dtype} has no CTranslate2 id")
        raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
        out += [string(name), struct.pack("<B", value.ndim),
                struct.pack(f"<{value.ndim}I", *value.shape),
                struct.pack("<BI", DTYPES.index(value.dtype.name), len(raw)), raw]
    aliases = aliases or {}
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in sorted(aliases.items()):
        out += [string(alias), string(target)]
    path = Path(path)
    path.write_bytes(b"".join(out))
    return path
