"""Reading a layershare ONNX export's files, each checked before ONNX Runtime sees it.

An export directory (``layershare export --format onnx``) holds ``onnx.json`` (what the graph
takes and returns), ``model.onnx`` with its external weights file, ``tokenizer.json`` and
``config.json``. ONNX Runtime, tokenizers and the JSON reader each fail in their own way on a
damaged file -- a pybind ``Fail``, a bare ``Exception``, an ``AttributeError`` -- which used
to escape as tracebacks. Here every file goes through the loader gate (formats/gate.py:
regular files inside the directory), ``onnx.json`` is checked field by field, every
external-data location of the graph is checked to be a file of the directory with its byte
range inside it (ONNX Runtime refuses locations outside the model's directory itself, and
this check does not depend on it), and every error of ONNX Runtime is one
:class:`LayershareError`. No torch or transformers import.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import LayershareError, first_line
from ..formats.gate import admit, file_inside
from ..formats.onnx import META, ONNX_FILE

TASKS = ("causal-lm", "encoder")
CAUSAL_INPUTS = ("input_ids", "attention_mask", "position_ids")


def read_export(directory: str | os.PathLike) -> dict:
    """The export's ``onnx.json``, checked; one line if ``directory`` is not a readable
    layershare ONNX export."""
    path = Path(directory)
    if not path.is_dir():
        raise LayershareError(f"{path}: no such directory")
    if not (path / META).exists() and not (path / META).is_symlink():
        raise LayershareError(f"{path}: not a layershare ONNX export (no {META})")
    admit(path)  # onnx.json, model.onnx and the side files: regular files inside
    try:
        meta = json.loads(file_inside(path, META).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise LayershareError(f"{path / META}: cannot be read ({first_line(exc)})") from None
    if not isinstance(meta, dict) or meta.get("task") not in TASKS:
        raise LayershareError(f"{path / META}: not a layershare ONNX export description")
    _check_meta(path / META, meta)
    check_external_data(path)
    return meta


def _check_meta(where: Path, meta: dict) -> None:
    def names(key):
        value = meta.get(key)
        if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
            raise LayershareError(f"{where}: {key} must be a non-empty list of names")
        return value

    inputs, _ = names("inputs"), names("outputs")
    if meta["task"] != "causal-lm":
        return
    missing = [n for n in CAUSAL_INPUTS if n not in inputs]
    if missing:
        raise LayershareError(f"{where}: inputs lack {missing}")
    shapes = meta.get("past_shapes")
    if not (isinstance(shapes, list) and shapes and all(
            isinstance(s, list) and len(s) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in s)
            for s in shapes)):
        raise LayershareError(f"{where}: past_shapes must be a list of [heads, head_dim] "
                              "pairs of positive integers")
    past = [n for n in inputs if n.startswith("past_key_values.")]
    if len(past) != 2 * len(shapes):
        raise LayershareError(f"{where}: {len(past)} cache inputs for {len(shapes)} layers "
                              "(a key and a value per layer expected)")


def check_external_data(directory: Path) -> None:
    """Every external-data location of ``model.onnx`` is a file of ``directory`` and the
    declared byte range lies inside it. Needs the ``onnx`` package (present with the
    ``onnx`` extra); without it, ONNX Runtime's own check stands alone."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        return
    graph_path = file_inside(directory, ONNX_FILE, "ONNX graph")
    try:
        model = onnx.load(str(graph_path), load_external_data=False)
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise LayershareError(f"{graph_path}: not a readable ONNX graph "
                              f"({first_line(exc)[:160]})") from None
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    sizes: dict[str, int] = {}
    for tensor in _get_all_tensors(model):
        if not uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        if location not in sizes:
            sizes[location] = file_inside(directory, location, "external data").stat().st_size
        try:
            offset, length = int(info.get("offset", 0)), int(info.get("length", 0))
        except ValueError:
            raise LayershareError(f"{graph_path}: tensor {tensor.name} has a malformed external "
                                  "data range") from None
        if offset < 0 or length < 0 or offset + length > sizes[location]:
            raise LayershareError(f"{graph_path}: tensor {tensor.name} declares bytes "
                                  f"{offset}+{length} of {location}, which has "
                                  f"{sizes[location]}")


def check_inputs(directory: Path, meta: dict, session) -> None:
    """The graph's inputs are the ones ``onnx.json`` names."""
    graph = [i.name for i in session.get_inputs()]
    if sorted(graph) != sorted(meta["inputs"]):
        raise LayershareError(f"{directory / META}: names inputs the graph does not have "
                              f"(graph: {graph[:4]}..., onnx.json: {meta['inputs'][:4]}...)")


def load_tokenizer(directory: str | os.PathLike):
    """The ``tokenizers`` tokenizer the export carries (``tokenizer.json``)."""
    from tokenizers import Tokenizer

    if not (Path(directory) / "tokenizer.json").exists():
        raise LayershareError(f"{directory}: the export has no tokenizer.json (export from a "
                              "model directory that has one)")
    path = file_inside(directory, "tokenizer.json")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 -- tokenizers raises a bare Exception
        raise LayershareError(f"{path}: cannot be read ({first_line(exc)[:160]})") from None


def eos_ids(directory: str | os.PathLike) -> set[int]:
    """End-of-sequence ids from the export's generation_config.json / config.json (a file
    that is missing or not a JSON object gives none)."""
    ids: set[int] = set()
    for name in ("generation_config.json", "config.json"):
        if not (Path(directory) / name).exists():
            continue
        try:
            config = json.loads(file_inside(directory, name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        value = config.get("eos_token_id") if isinstance(config, dict) else None
        ids.update(v for v in (value if isinstance(value, list) else [value])
                   if isinstance(v, int) and not isinstance(v, bool))
    return ids
