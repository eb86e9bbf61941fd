"""Compact checkpoints: each shared tensor stored once.

A checkpoint is a directory:

* ``model.safetensors`` -- the model's state dict with every tensor once, under the name of
  its first occurrence (the order of ``state_dict()``, which a rebuilt model repeats);
* ``layershare.json`` -- format version, the ShareConfig (or null for a dense model) and how
  to rebuild the base model (``{"library": "transformers", "class": "GPT2LMHeadModel"}``);
* ``config.json`` -- the transformers config, for transformers models.

``load`` rebuilds the base model from its config, converts it with the same ShareConfig (the
structure, not the weights) and copies the stored tensors in; nothing is unpickled
(safetensors, ``json``). ``load_structure`` does the same on the meta device against the
safetensors header alone: the model's shape and counts without reading or allocating a
single weight (``layershare inspect`` on a checkpoint of any size). Writes follow the output
policy of :mod:`layershare.outputs` (a temporary sibling renamed into place; no file or foreign
directory is ever replaced), so a crash never leaves a half-written checkpoint.
``layershare.json`` is checked against :data:`META_SCHEMA` before anything in it is used.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .config import ShareConfig
from .empty import empty_weights
from .errors import LayershareError, first_line
from .outputs import atomic_directory, check_out
from .paths import file_inside
from .surgery import convert

__all__ = ["save", "load", "load_structure", "read_meta", "atomic_directory", "unique_state"]

#: 2: the factors are named ``lora_A`` / ``lora_B`` in both ResidualLinear and LowRankLinear
#: (format 1: ``lora_a`` / ``lora_b`` and ``basis`` / ``coeff``; still read, see upgrade_names)
FORMAT = 2
READABLE = (1, 2)
#: format 1 name -> format 2 name, per parameter of a converted matrix (lora_a was m x r)
FORMAT1_NAMES = {"lora_a": "lora_B", "lora_b": "lora_A", "basis": "lora_B", "coeff": "lora_A"}
WEIGHTS, META = "model.safetensors", "layershare.json"


def unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict with each tensor once (first name wins)."""
    state, seen = {}, set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) not in seen:
            seen.add(id(tensor))
            state[name] = tensor.detach()
    return state


def base_info(model: nn.Module) -> dict:
    """How to rebuild ``model``'s class without its weights."""
    own = getattr(model, "layershare_base", None)
    if callable(own):
        return own()
    if hasattr(model, "config") and hasattr(model, "save_pretrained"):
        return {"library": "transformers", "class": type(model).__name__}
    return {"library": "torch", "class": type(model).__name__}


#: ``save(dtype=...)``: the floating-point formats a checkpoint may be written in
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def save(model: nn.Module, directory: str | os.PathLike,
         extra_files: dict[str, Path] | None = None, overwrite: bool = False,
         dtype: str | None = None) -> Path:
    """Write ``model`` to ``directory`` atomically. An earlier checkpoint there is replaced;
    a file or a directory of other things is refused (``overwrite=True`` replaces another
    layershare output), see :mod:`layershare.outputs`. ``dtype`` (``fp32`` | ``bf16`` |
    ``fp16``) stores every floating tensor in that format (the model itself is unchanged);
    ``load`` gives the model in the stored format."""
    if not isinstance(model, nn.Module):
        raise LayershareError(f"save expects a torch nn.Module, got {type(model).__name__}")
    if dtype is not None and dtype not in DTYPES:
        raise LayershareError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    cast = DTYPES.get(dtype)
    directory = check_out(directory, "checkpoint", overwrite=overwrite, flag="directory")
    config = getattr(model, "layershare_config", None)
    meta = {"format": FORMAT, "config": None if config is None else config.to_dict(),
            "base": base_info(model)}

    def write(tmp: Path):
        state = {k: (v.to(cast) if cast is not None and v.is_floating_point() else v)
                 .contiguous() for k, v in unique_state(model).items()}
        save_file(state, tmp / WEIGHTS, metadata={"format": "pt"})
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        if meta["base"]["library"] == "transformers":
            model.config.save_pretrained(tmp)
        for name, src in (extra_files or {}).items():
            shutil.copy2(src, tmp / name)

    return atomic_directory(directory, write)


#: layershare.json: key -> allowed JSON types; ``base`` and ``config`` are checked further
META_SCHEMA = {"format": (int,), "config": (dict, type(None)), "base": (dict,)}
BASE_SCHEMA = {"library": (str,), "class": (str,), "config": (dict,)}
LIBRARIES = ("transformers", "layershare", "torch")


def read_meta(directory: str | os.PathLike) -> dict:
    """The checkpoint's ``layershare.json``, checked against the schema (types and keys)."""
    path = Path(directory)
    if not path.is_dir():
        raise LayershareError(f"{path}: no such checkpoint directory")
    if not (path / META).exists() and not (path / META).is_symlink():
        raise LayershareError(f"{path}: not a layershare checkpoint (no {META})")
    try:  # the loader gate's rule: a regular file inside the directory (never a FIFO)
        meta = json.loads(file_inside(path, META).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LayershareError(f"{path}: not a layershare checkpoint (no {META})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LayershareError(f"{path / META}: corrupted ({exc})") from None
    except OSError as exc:
        raise LayershareError(f"{path / META}: cannot be read ({exc.strerror})") from None
    check_meta(meta, path / META)
    return meta


def _kinds(types) -> str:
    names = {dict: "an object", list: "a list", str: "a string", int: "an integer",
             bool: "true/false", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_keys(tree: dict, schema: dict, where: str, required=()) -> None:
    for key, value in tree.items():
        if key not in schema:
            raise LayershareError(f"{where}: unknown key {key!r}; known: {', '.join(schema)}")
        types = schema[key]
        if isinstance(value, bool) and bool not in types or not isinstance(value, types):
            raise LayershareError(f"{where}: {key!r} must be {_kinds(types)}, got {value!r:.60}")
    missing = [k for k in required if k not in tree]
    if missing:
        raise LayershareError(f"{where}: missing key {missing[0]!r}")


def check_meta(meta, where) -> None:
    """Raise a one-line error unless ``meta`` fits :data:`META_SCHEMA`; the stored
    ShareConfig is checked by ShareConfig itself (its fields, then their values)."""
    if not isinstance(meta, dict):
        raise LayershareError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    _check_keys(meta, META_SCHEMA, where, required=META_SCHEMA)
    if meta["format"] not in READABLE:
        raise LayershareError(f"{where}: unknown checkpoint format {meta['format']!r} (this "
                              f"layershare reads {', '.join(map(str, READABLE))})")
    base = meta["base"]
    _check_keys(base, BASE_SCHEMA, f"{where}: base", required=("library", "class"))
    if base["library"] not in LIBRARIES:
        raise LayershareError(f"{where}: base library {base['library']!r} is not one of "
                              f"{', '.join(LIBRARIES)}")
    if meta["config"] is not None:
        known = set(ShareConfig.model_fields)
        unknown = sorted(set(meta["config"]) - known)
        if unknown:
            raise LayershareError(f"{where}: unknown config key {unknown[0]!r}; known: "
                                  f"{', '.join(sorted(known))}")
        if "method" not in meta["config"]:
            raise LayershareError(f"{where}: config has no 'method'")
        try:
            ShareConfig(**meta["config"])
        except LayershareError as exc:
            raise LayershareError(f"{where}: config: {exc}") from None


def build_base(directory: Path, base: dict) -> nn.Module:
    """An untrained model of the checkpoint's base class."""
    if base.get("library") == "transformers":
        import transformers
        cls = getattr(transformers, str(base.get("class")), None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise LayershareError(f"{directory}: unknown transformers class {base.get('class')!r}")
        from .formats.gate import NO_REMOTE_CODE, check_config, no_prompt
        check_config(directory)  # the loader gate: no custom code, sane head counts
        try:
            with no_prompt():
                config = transformers.AutoConfig.from_pretrained(directory, **NO_REMOTE_CODE)
        except (OSError, ValueError, KeyError) as exc:
            raise LayershareError(f"{directory}/config.json: cannot be read "
                                  f"({first_line(exc)})") from None
        if not isinstance(config, cls.config_class):
            raise LayershareError(f"{directory}: class {cls.__name__} does not fit its "
                                  f"config.json (a {type(config).__name__})")
        return cls(config)
    if base.get("library") == "layershare":
        from .models import build_model  # the project's reference models
        return build_model(base)
    raise LayershareError(f"{directory}: a {base.get('class')} cannot be rebuilt from its files; "
                          "pass the dense model: load(directory, model=...)")


def _weights(directory: Path) -> Path:
    """``model.safetensors`` of ``directory``, through the loader gate's rule: a regular file
    inside the directory (a symlink out of it, a FIFO or a device is refused in one line)."""
    if not (directory / WEIGHTS).exists() and not (directory / WEIGHTS).is_symlink():
        raise FileNotFoundError(directory / WEIGHTS)  # "WEIGHTS is missing", as before
    return file_inside(directory, WEIGHTS, "weights")


def _stored_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every stored tensor, from the safetensors header (no data read)."""
    try:
        with safe_open(_weights(directory), "pt") as f:
            return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except FileNotFoundError:
        raise LayershareError(f"{directory}: {WEIGHTS} is missing") from None
    except LayershareError:
        raise
    except (SafetensorError, OSError, ValueError) as exc:
        raise LayershareError(f"{directory / WEIGHTS}: corrupted or truncated ({exc})") from None


def upgrade_names(stored: dict, expected, fmt: int) -> dict:
    """``stored`` (name -> tensor or shape) with format-1 factor names renamed to format 2's,
    where the model expects the new name; other names and format-2 checkpoints unchanged."""
    if fmt != 1:
        return stored
    out = {}
    for name, value in stored.items():
        head, _, last = name.rpartition(".")
        new = f"{head}.{FORMAT1_NAMES[last]}" if last in FORMAT1_NAMES else name
        out[new if new in expected and name not in expected else name] = value
    return out


def _check_matches(directory: Path, expected: dict[str, torch.Tensor],
                   stored: dict[str, tuple[int, ...]]) -> None:
    if set(expected) != set(stored):
        missing = sorted(set(expected) - set(stored))
        unexpected = sorted(set(stored) - set(expected))
        raise LayershareError(f"{directory}: checkpoint does not match the model "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, target in expected.items():
        if tuple(target.shape) != stored[name]:
            raise LayershareError(f"{directory}: {name} has shape {stored[name]}, "
                                  f"the model expects {tuple(target.shape)}")


def _rebuild(directory: Path, meta: dict, model: nn.Module | None) -> nn.Module:
    if model is None:
        model = build_base(directory, meta["base"])
    if meta["config"] is not None:
        convert(model, config=ShareConfig(**{**meta["config"], "init": "scratch"}))
    return model


def load_structure(directory: str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """The checkpoint's model on the meta device -- its modules, sharing and parameter shapes,
    no weights -- checked against the stored tensors' names and shapes. For counting
    (``layershare.count``) a checkpoint of any size; ``load`` for the weights."""
    directory = Path(directory)
    meta = read_meta(directory)
    stored = _stored_shapes(directory)
    with torch.device("meta"):
        model = _rebuild(directory, meta, model)
    expected = unique_state(model)
    _check_matches(directory, expected, upgrade_names(stored, expected, meta["format"]))
    return model


def load(directory: str | os.PathLike, model: nn.Module | None = None,
         cache_merged: bool = False) -> nn.Module:
    """Rebuild the model saved in ``directory`` (in eval mode), at its reduced size.

    ``model``: an untrained dense model of the right shape, for classes that cannot be rebuilt
    from a config (plain torch modules). ``cache_merged``: keep each residual layer's merged
    dense weight after its first forward (:func:`layershare.residual.set_cache_merged`) --
    trades memory for prefill speed; off by default.

    Memory: without ``model`` the base model is built with its parameters on the meta device
    (no dense weight is ever allocated, see :func:`layershare.empty.empty_weights`), and the stored
    tensors, read into ordinary memory, become the parameters without a copy: the peak is the
    checkpoint's size, not the dense model's.
    """
    directory = Path(directory)
    meta = read_meta(directory)
    tensors = _read_tensors(directory)
    if model is None:
        with empty_weights():
            model = _rebuild(directory, meta, None)
        tensors = upgrade_names(tensors, unique_state(model), meta["format"])
        _check_matches(directory, unique_state(model),
                       {k: tuple(t.shape) for k, t in tensors.items()})
        _adopt(model, tensors)
    else:
        model = _rebuild(directory, meta, model)
        expected = unique_state(model)
        tensors = upgrade_names(tensors, expected, meta["format"])
        _check_matches(directory, expected, {k: tuple(t.shape) for k, t in tensors.items()})
        dtypes = {t.dtype for t in tensors.values() if t.dtype.is_floating_point}
        if len(dtypes) == 1:  # one floating dtype (bf16, fp32...): the model takes it;
            model.to(dtypes.pop())  # a mixed checkpoint is copied tensor by tensor below
            expected = unique_state(model)
        with torch.no_grad():
            for name, target in expected.items():
                target.copy_(tensors[name])
    if cache_merged:
        from .residual import set_cache_merged
        set_cache_merged(model, True)
    return model.eval()


def _read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """The stored tensors in ordinary (anonymous, writable) memory: safetensors' ``pread``
    backend where it has one, so no file mapping outlives the load or doubles the RSS."""
    try:
        try:
            return load_file(_weights(directory), backend="pread")
        except TypeError:  # safetensors < 0.8: no backend argument
            return load_file(_weights(directory))
    except FileNotFoundError:
        raise LayershareError(f"{directory}: {WEIGHTS} is missing") from None
    except LayershareError:
        raise
    except (SafetensorError, OSError, ValueError) as exc:
        raise LayershareError(f"{directory / WEIGHTS}: corrupted or truncated ({exc})") from None


def _adopt(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Make the stored tensors the model's parameters and persistent buffers, in place of the
    meta ones, keeping every sharing: all holders of one tensor get the same new Parameter."""
    names = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        names.setdefault(id(tensor), name)  # first name wins, as in unique_state
    new: dict[int, torch.Tensor] = {}
    for module in model.modules():
        for slot in (module._parameters, module._buffers):
            for key, old in slot.items():
                if old is None or id(old) not in names:
                    continue  # a non-persistent buffer: computed in __init__, kept
                if id(old) not in new:
                    value = tensors[names[id(old)]]
                    new[id(old)] = (nn.Parameter(value, requires_grad=old.requires_grad)
                                    if isinstance(old, nn.Parameter) else value)
                slot[key] = new[id(old)]
    dtypes = {t.dtype for t in tensors.values() if t.dtype.is_floating_point}
    if len(dtypes) == 1:  # as before: one floating dtype, the whole model takes it (buffers)
        model.to(dtypes.pop())
