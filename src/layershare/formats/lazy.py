"""Open a transformers safetensors checkpoint with its layer stacks left unread.

Compressing a model layer by layer needs only one block of dense weights at a time. A
``LazyModel`` builds the model with empty (meta) parameters (accelerate's
``init_empty_weights``; buffers such as rotary frequencies are built for real), reads every
tensor outside the layer stacks at once (embeddings, final norm, head), and reads a layer's
tensors only when ``materialize`` is called for it. Tensors come from the safetensors files
through ``safe_open`` (memory-mapped: a tensor is read when asked for, nothing is unpickled).

``finish()`` checks that every parameter of the model was read and every stored tensor used,
so a checkpoint whose names do not fit the class is an error, never a silent random weight.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from torch import nn

from ..errors import LayershareError

INDEX, SINGLE = "model.safetensors.index.json", "model.safetensors"


def can_open_lazily(src: str | os.PathLike) -> bool:
    """A transformers directory with safetensors weights (single file or sharded)."""
    path = Path(src)
    return path.is_dir() and (path / "config.json").is_file() and (
        (path / SINGLE).is_file() or (path / INDEX).is_file())


class LazyModel:
    """``lazy = LazyModel(src, stack_paths)``; ``lazy.model``; ``lazy.materialize(path, [l...])``."""

    def __init__(self, src: str | os.PathLike, stack_paths=None):
        import transformers
        from accelerate import init_empty_weights
        from safetensors import safe_open

        self.src = Path(src)
        try:
            config = transformers.AutoConfig.from_pretrained(self.src)
        except (OSError, ValueError) as exc:
            raise LayershareError(f"{self.src}/config.json: cannot be read ({exc})") from None
        names = getattr(config, "architectures", None) or []
        cls = getattr(transformers, names[0], None) if names else None
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise LayershareError(f"{self.src}: architectures {names!r} is not a transformers class")
        with init_empty_weights():
            self.model = cls(config)
        self.model.eval()
        files = ([self.src / SINGLE] if (self.src / SINGLE).is_file() else sorted(
            {self.src / f for f in json.loads((self.src / INDEX).read_text())["weight_map"].values()}))
        self._where = {}
        for f in files:
            with safe_open(f, "pt") as handle:
                self._where.update({k: f for k in handle.keys()})
        self._used: set[str] = set()
        self.stack_paths = list(stack_paths) if stack_paths is not None else _default_paths(self.model)
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
        from safetensors import safe_open

        by_file: dict[Path, dict] = {}
        for f in {self._where[n] for n in names if n in self._where}:
            with safe_open(f, "pt") as handle:  # read, copy out, unmap
                by_file[f] = {n: handle.get_tensor(n) for n in names if self._where.get(n) == f}
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
        return out if out is not None and name.endswith("weight") and out.weight is not None else None

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
            raise LayershareError(f"{self.src}: stored tensors the model does not use: {unused[:3]}")
        return self.model


def _default_paths(model: nn.Module) -> list[str]:
    from ..surgery import stack_specs
    return [s.path for s in stack_specs(model)]

