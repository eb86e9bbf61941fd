"""Reading a sharded (DCP) checkpoint's ``.metadata`` without letting the file run code.

``torch.distributed.checkpoint`` writes ``sharded/.metadata`` with :mod:`pickle` and its
``FileSystemReader`` reads it back with ``pickle.load``: a crafted file runs any command
the moment ``layershare consolidate`` or an FSDP resume opens it. The shard files
themselves are safe (DCP reads them with ``torch.load(weights_only=True)``).

:func:`read_metadata` unpickles the file with :class:`_AllowListUnpickler`, whose
``find_class`` hands out only the plain dataclasses, enums and value types that DCP's
``Metadata`` is made of (listed in :data:`ALLOWED`, read off the files today's writer
produces) -- every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``...)
is refused before anything is called. Pickle can only call what ``find_class`` returns, so
the worst a file can do is build those dataclasses with odd values, which
:func:`_check` then refuses: every shard a record points at must be a plain file name of
the checkpoint directory, a regular file, with the declared byte range inside it and no
"transform" (DCP's compression extensions) applied. Checkpoints written by today's code
read unchanged; no new file format is needed.

:func:`safe_reader` is DCP's ``FileSystemReader`` with this ``read_metadata``; pass it as
``storage_reader`` to ``dcp.load``. The shards hold a second pickle: every non-tensor entry
of the state (an optimizer's ``lr``, ``betas``, ``step`` counts...) is a pickled "bytes"
item, which DCP's ``DefaultLoadPlanner.load_bytes`` reads with ``torch.load(...,
weights_only=False)`` -- code execution again, from a ``.distcp`` file. :func:`safe_planner`
reads them with ``weights_only=True`` (plain numbers, strings, containers and tensors only);
pass it as ``planner``. :func:`describe` turns DCP's ``CheckpointException`` (a
``BaseException``, which ``except Exception`` misses) into one line.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

from ..errors import LayershareError, first_line
from ..paths import file_inside

METADATA = ".metadata"
_DCP = "torch.distributed.checkpoint.metadata"
ALLOWED = {  # module -> names that a DCP .metadata may refer to
    _DCP: {"Metadata", "TensorStorageMetadata", "BytesStorageMetadata",
           "ChunkStorageMetadata", "TensorProperties", "StorageMeta", "MetadataIndex",
           "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch": {"Size", "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16",
              "int8", "uint8", "bool", "complex64", "complex128", "float8_e4m3fn",
              "float8_e5m2"},
    "torch.serialization": {"_get_layout"},  # layout by name ("torch.strided")
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _AllowListUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals of :data:`ALLOWED`."""

    def find_class(self, module: str, name: str):
        if name not in ALLOWED.get(module, ()):
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a checkpoint's "
                                         "metadata never holds (refused, not run)")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("holds a persistent reference (refused)")


def read_metadata(directory: str | os.PathLike, name: str = METADATA):
    """The DCP ``Metadata`` of ``directory`` (a ``sharded/`` folder), checked; nothing in
    the file is executed. A file that is not plain metadata is a :class:`LayershareError`
    saying why."""
    directory = Path(directory)
    path = file_inside(directory, name, what="sharded checkpoint metadata")
    try:
        with open(path, "rb") as f:
            metadata = _AllowListUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError,
            IndexError, KeyError, RuntimeError, MemoryError, RecursionError) as exc:
        raise LayershareError(f"{path}: not a sharded checkpoint's metadata "
                              f"({first_line(exc)})") from None
    _check(directory, path, metadata)
    return metadata


def _check(directory: Path, path: Path, metadata) -> None:
    """Refuse metadata whose fields are not what DCP writes, or whose records point at
    anything but byte ranges of regular files in ``directory``."""
    from torch.distributed.checkpoint.filesystem import _StorageInfo
    from torch.distributed.checkpoint.metadata import (
        BytesStorageMetadata,
        Metadata,
        MetadataIndex,
        StorageMeta,
        TensorStorageMetadata,
    )

    def bad(why: str) -> LayershareError:
        return LayershareError(f"{path}: not a sharded checkpoint's metadata ({why})")

    if not isinstance(metadata, Metadata):
        raise bad(f"holds a {type(metadata).__name__}, not DCP Metadata")
    entries = metadata.state_dict_metadata
    if not isinstance(entries, dict) or not all(
            isinstance(k, str) and isinstance(v, (TensorStorageMetadata, BytesStorageMetadata))
            for k, v in entries.items()):
        raise bad("state_dict_metadata is not a table of tensor and bytes entries")
    if not isinstance(metadata.storage_data, dict):
        raise bad("no storage table")
    if metadata.storage_meta is not None and not isinstance(metadata.storage_meta, StorageMeta):
        raise bad("storage_meta is not a StorageMeta")
    sizes: dict[str, int] = {}
    for index, info in metadata.storage_data.items():
        if not isinstance(index, MetadataIndex) or not isinstance(info, _StorageInfo):
            raise bad("a storage record is not an index and a byte range")
        rel = info.relative_path
        if (not isinstance(rel, str) or not rel or rel != os.path.basename(rel)
                or rel in (".", "..")):
            raise bad(f"shard {rel!r} is not a file name inside {directory}")
        if info.transform_descriptors:
            raise bad(f"shard {rel} is stored with transforms {info.transform_descriptors!r}, "
                      "which layershare never writes")
        if rel not in sizes:
            sizes[rel] = file_inside(directory, rel, what="shard").stat().st_size
        offset, length = info.offset, info.length
        if not (isinstance(offset, int) and isinstance(length, int) and offset >= 0
                and length >= 0 and offset + length <= sizes[rel]):
            raise bad(f"record {index.fqn} declares bytes {offset!r}+{length!r} of {rel}, "
                      f"which has {sizes[rel]}")
    if metadata.storage_meta is None:
        metadata.storage_meta = StorageMeta()


def safe_reader(directory: str | os.PathLike):
    """DCP's ``FileSystemReader`` for ``directory`` with :func:`read_metadata`."""
    from torch.distributed.checkpoint import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            name = Path(self._get_metadata_path(kwargs.get("rank"))).name
            metadata = read_metadata(self.path, name)
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(str(directory))


def safe_planner():
    """DCP's ``DefaultLoadPlanner`` whose non-tensor ("bytes") items are unpickled with
    ``torch.load(weights_only=True)``: a crafted shard cannot run code."""
    import torch
    from torch.distributed.checkpoint import DefaultLoadPlanner
    from torch.distributed.checkpoint._traverse import set_element  # what DCP's own uses

    class SafeLoadPlanner(DefaultLoadPlanner):
        def load_bytes(self, read_item, value) -> None:
            obj = torch.load(value, weights_only=True)
            if self.flatten_state_dict:
                set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn],
                            obj)
            else:
                self.state_dict[read_item.dest_index.fqn] = obj

    return SafeLoadPlanner()


def describe(exc: BaseException) -> str:
    """One line for what DCP raised: the first failure inside a ``CheckpointException``
    (whose own message is a multi-line traceback), else the exception's first line."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        inner = next(iter(failures.values()))
        if isinstance(inner, tuple) and inner and isinstance(inner[0], BaseException):
            exc = inner[0]
    return first_line(exc)[:200]
