"""Open a transformers safetensors checkpoint with its layer stacks left unread.

Compressing a model layer by layer needs only one block of dense weights at a time. A
``LazyModel`` builds the model with empty (meta) parameters (``empty_weights`` of
:mod:`layershare.empty`, as ``layershare.load`` does; buffers such as rotary frequencies are
built for real), reads every tensor outside the layer stacks at once (embeddings, final norm,
head), and reads a layer's tensors only when ``materialize`` is called for it. Tensors are
read from the safetensors files by plain ``read`` calls at the offsets of the file's JSON
header (``read_tensors``), not through ``safe_open``'s memory map: every page of a mapped file
that a tensor touched stays in the process's resident set while the map lives, so reading
layer after layer through it grew RSS by one dense layer per layer, although the dense
tensors were long freed. Nothing is unpickled or executed either way.

What may be read is decided by the loader gate (formats/gate.py): the config may not ask
for custom code (``auto_map``), transformers runs with ``trust_remote_code=False`` and an
empty stdin, and every weights file -- each entry of a sharded index included -- must be a
regular file inside the model directory. Each file's header is parsed and validated by
safetensors itself (``safe_open``: header size, JSON, dtypes, shapes times item size equal
to the byte ranges, ranges inside the file and non-overlapping) before any offset of it is
used; the header is opened, checked and closed, so no data page is mapped.

``finish()`` checks that every parameter of the model was read and every stored tensor used,
so a checkpoint whose names do not fit the class is an error, never a silent random weight.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..errors import LayershareError, first_line
from .gate import INDEX, NO_REMOTE_CODE, SINGLE, admit, no_prompt, safetensors_files


def can_open_lazily(src: str | os.PathLike) -> bool:
    """A transformers directory with safetensors weights (single file or sharded); the
    loader gate decides whether it may be read at all (one line if not)."""
    path = Path(src)
    if not (path.is_dir() and (path / "config.json").exists()):
        return False
    if not ((path / SINGLE).exists() or (path / INDEX).exists()
            or (path / SINGLE).is_symlink() or (path / INDEX).is_symlink()):
        return False
    return admit(path) == "transformers"


class LazyModel:
    """``lazy = LazyModel(src, stack_paths)``; ``lazy.model``;
    ``lazy.materialize(path, [l...])``."""

    def __init__(self, src: str | os.PathLike, stack_paths=None):
        import transformers

        from ..empty import empty_weights
        self.src = Path(src)
        if admit(self.src) != "transformers":
            raise LayershareError(f"{self.src}: not a transformers model directory")
        try:
            with no_prompt():
                config = transformers.AutoConfig.from_pretrained(self.src, **NO_REMOTE_CODE)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LayershareError(f"{self.src}/config.json: cannot be read "
                                  f"({first_line(exc)})") from None
        names = getattr(config, "architectures", None) or []
        cls = getattr(transformers, names[0], None) if names else None
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise LayershareError(f"{self.src}: architectures {names!r} "
                                  "is not a transformers class")
        with empty_weights():
            self.model = cls(config)
        self.model.eval()
        self._where: dict[str, Path] = {}
        self._headers: dict[Path, dict] = {}
        for f in safetensors_files(self.src):
            self._headers[f] = _header(f)
            for name in self._headers[f]:
                if name in self._where:
                    raise LayershareError(f"{self.src}: tensor {name!r} is stored twice "
                                          f"({self._where[name].name} and {f.name})")
                self._where[name] = f
        self._used: set[str] = set()
        self.stack_paths = (list(stack_paths) if stack_paths is not None
                            else _default_paths(self.model))
        inside = tuple(p + "." for p in self.stack_paths)
        self._load([n for n, _ in self._named_tensors() if not n.startswith(inside)])

    def _named_tensors(self):
        seen = set()
        for name, p in list(self.model.named_parameters(remove_duplicate=False)) + list(
                self.model.named_buffers(remove_duplicate=False)):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _load(self, names: list[str]) -> None:
        by_file: dict[Path, dict] = {}
        for f in {self._where[n] for n in names if n in self._where}:
            by_file[f] = read_tensors(f, [n for n in names if self._where.get(n) == f],
                                      self._headers[f])
        for name in names:
            module_name, _, leaf = name.rpartition(".")
            module = self.model.get_submodule(module_name)
            current = getattr(module, leaf)
            if name not in self._where:
                if current.is_meta and leaf in module._parameters:
                    tied = self._tied_source(name)
                    if tied is None:
                        raise LayershareError(f"{self.src}: the checkpoint has no tensor {name!r}")
                continue  # a buffer built by the class, or a tied weight set below
            value = by_file[self._where[name]][name].to(current.dtype)
            if tuple(value.shape) != tuple(current.shape):
                raise LayershareError(f"{self.src}: {name} has shape {tuple(value.shape)}, the "
                                      f"model expects {tuple(current.shape)}")
            if leaf in module._parameters:
                module._parameters[leaf] = nn.Parameter(value, requires_grad=current.requires_grad)
            else:
                module._buffers[leaf] = value
            self._used.add(name)
        self.model.tie_weights()

    def _tied_source(self, name: str):
        if not getattr(self.model.config, "tie_word_embeddings", False):
            return None
        out = self.model.get_output_embeddings()
        return (out if out is not None and name.endswith("weight") and out.weight is not None
                else None)

    def materialize(self, stack_path: str, layers) -> None:
        """Read the dense tensors of ``layers`` (indices) of the stack at ``stack_path``."""
        prefix = [f"{stack_path}.{l}." for l in layers]
        self._load([n for n, t in self._named_tensors()
                    if t.is_meta and any(n.startswith(p) for p in prefix)])

    def finish(self) -> nn.Module:
        """The model, after checking that nothing is left unread or unused."""
        left = [n for n, t in self._named_tensors() if t.is_meta]
        if left:
            raise LayershareError(f"{self.src}: {len(left)} tensors were never read ({left[0]}...)")
        unused = sorted(set(self._where) - self._used)
        if unused:
            raise LayershareError(f"{self.src}: stored tensors the model does not use: "
                                  f"{unused[:3]}")
        return self.model


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
           "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
           "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def _header(path: Path) -> dict[str, dict]:
    """name -> {dtype, shape, data_offsets} of a safetensors file, with ``data_offsets``
    made absolute (from the start of the file). safetensors parses and validates the header
    (``safe_open``); its JSON is then read for the offsets, which safetensors does not
    expose, and each entry is checked to agree with what safetensors reported."""
    try:
        with safe_open(path, "pt") as f:
            checked = {name: f.get_slice(name) for name in f.keys()}
            checked = {name: (s.get_dtype(), tuple(s.get_shape())) for name, s in checked.items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise LayershareError(f"{path}: not a safetensors file ({first_line(exc)})") from None
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))  # safetensors just validated these bytes
    out = {}
    for name, (dtype, shape) in checked.items():
        info = header[name]
        begin, end = info["data_offsets"]
        if (info["dtype"], tuple(info["shape"])) != (dtype, shape):
            raise LayershareError(f"{path}: {name}: the header disagrees with safetensors")
        out[name] = {"dtype": dtype, "shape": shape,
                     "data_offsets": (8 + size + begin, 8 + size + end)}
    return out


def read_tensors(path: Path, names: list[str],
                 header: dict | None = None) -> dict[str, torch.Tensor]:
    """The named tensors of a safetensors file, each read into its own memory (no map)."""
    header = header if header is not None else _header(path)
    out = {}
    with open(path, "rb") as f:
        for name in names:
            info = header[name]
            dtype = _DTYPES.get(info["dtype"])
            if dtype is None:
                raise LayershareError(f"{path}: {name} has unsupported dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            f.seek(begin)
            data = bytearray(f.read(end - begin))
            if len(data) != end - begin:
                raise LayershareError(f"{path}: truncated at tensor {name}")
            tensor = torch.frombuffer(data, dtype=dtype) if data else torch.empty(0, dtype=dtype)
            out[name] = tensor.reshape(info["shape"])
    return out


def _default_paths(model: nn.Module) -> list[str]:
    from ..surgery import stack_specs
    return [s.path for s in stack_specs(model)]



def release_large_frees() -> bool:
    """Ask glibc to serve every allocation of 1 MiB or more by its own mmap (``mallopt
    M_MMAP_THRESHOLD``), so each freed dense layer goes back to the system at once.

    glibc raises its mmap threshold as large blocks are freed (up to 32 MiB), after which
    layer-sized tensors come from the heap and freed ones stay in the process, fragmented, and
    the resident set of a layer-by-layer compression grows faster than its live tensors
    (benchmarks/compress_memory.py measures it). Process-wide; returns False off glibc.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, 1 << 20))  # M_MMAP_THRESHOLD = -3 in glibc's malloc.h
    except (OSError, AttributeError):
        return False
