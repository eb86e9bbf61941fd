"""Where the repeated layer stack and its weight matrices live, per architecture.

A :class:`StackSpec` names a ``ModuleList`` of layers (by the end of its path) and, inside one
layer, the weight matrices with their kinds: ``q``, ``k``, ``v``, ``o`` (attention) and
``ffn_in``, ``ffn_out`` (feed-forward; Llama's gate and up projections are both ``ffn_in``).
A fused matrix (GPT-2's ``c_attn``, torch's ``in_proj_weight``) carries several kinds and is
converted only when all of them are selected.

Supported out of the box: transformers' BERT, GPT-2, Llama (and look-alikes), Whisper; torch's
``nn.TransformerEncoder``/``Decoder``/``Transformer``; any model whose class defines
``layershare_stacks`` (a list of StackSpec), as the project's reference models do. Anything
else through ``convert(model, stack=..., linears=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import LayershareError

if TYPE_CHECKING:  # torch is imported where a model is inspected: the CLI's parser reads KINDS
    from torch import nn

KINDS = ("q", "k", "v", "o", "ffn_in", "ffn_out")


@dataclass(frozen=True)
class StackSpec:
    """``path``: the stack's ``ModuleList`` (exact path or path suffix); ``linears``:
    ``(name inside a layer, kinds)`` pairs. A name ending in ``in_proj_weight`` is the fused
    input projection of an ``nn.MultiheadAttention``."""

    path: str
    linears: tuple[tuple[str, tuple[str, ...]], ...]


def _attn(prefix: str, q="q_proj", k="k_proj", v="v_proj", o="o_proj"):
    return ((f"{prefix}.{q}", ("q",)), (f"{prefix}.{k}", ("k",)),
            (f"{prefix}.{v}", ("v",)), (f"{prefix}.{o}", ("o",)))


_LLAMA = StackSpec("layers", _attn("self_attn") + (
    ("mlp.gate_proj", ("ffn_in",)), ("mlp.up_proj", ("ffn_in",)), ("mlp.down_proj", ("ffn_out",))))

# transformers' config.model_type -> the stacks of that family
TRANSFORMERS_STACKS: dict[str, tuple[StackSpec, ...]] = {
    "bert": (StackSpec("encoder.layer", (
        ("attention.self.query", ("q",)), ("attention.self.key", ("k",)),
        ("attention.self.value", ("v",)), ("attention.output.dense", ("o",)),
        ("intermediate.dense", ("ffn_in",)), ("output.dense", ("ffn_out",)))),),
    "gpt2": (StackSpec("h", (
        ("attn.c_attn", ("q", "k", "v")), ("attn.c_proj", ("o",)),
        ("mlp.c_fc", ("ffn_in",)), ("mlp.c_proj", ("ffn_out",)))),),
    "llama": (_LLAMA,), "mistral": (_LLAMA,), "qwen2": (_LLAMA,),
    "whisper": (
        StackSpec("encoder.layers", _attn("self_attn", o="out_proj") + (
            ("fc1", ("ffn_in",)), ("fc2", ("ffn_out",)))),
        StackSpec("decoder.layers", _attn("self_attn", o="out_proj")
                  + _attn("encoder_attn", o="out_proj") + (
                      ("fc1", ("ffn_in",)), ("fc2", ("ffn_out",))))),
}

_TORCH_ENCODER_LAYER = (("self_attn.in_proj_weight", ("q", "k", "v")),
                        ("self_attn.out_proj", ("o",)),
                        ("linear1", ("ffn_in",)), ("linear2", ("ffn_out",)))
_TORCH_DECODER_LAYER = _TORCH_ENCODER_LAYER[:2] + (
    ("multihead_attn.in_proj_weight", ("q", "k", "v")), ("multihead_attn.out_proj", ("o",))
) + _TORCH_ENCODER_LAYER[2:]


def _torch_stacks(model: nn.Module) -> tuple[StackSpec, ...]:
    from torch import nn

    specs = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.TransformerEncoder, nn.TransformerDecoder)):
            linears = (_TORCH_ENCODER_LAYER if isinstance(module, nn.TransformerEncoder)
                       else _TORCH_DECODER_LAYER)
            specs.append(StackSpec(f"{name}.layers" if name else "layers", linears))
    return tuple(specs)


def default_stacks(model: nn.Module) -> tuple[StackSpec, ...]:
    """The stacks layershare knows for ``model``; a clear error when it knows none."""
    own = getattr(model, "layershare_stacks", None)
    if own:
        return tuple(own)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in TRANSFORMERS_STACKS:
        return TRANSFORMERS_STACKS[model_type]
    specs = _torch_stacks(model)
    if specs:
        return specs
    raise LayershareError(
        f"layershare does not know where the layer stack of {type(model).__name__} "
        f"(model_type={model_type!r}) is; pass stack='path.to.layers' and "
        "linears={'name.in.layer': 'q', ...}")


def find_stack(model: nn.Module, path: str) -> tuple[str, nn.ModuleList]:
    from torch import nn

    """The one ``ModuleList`` at ``path`` or whose path ends in ``.path``."""
    hits = [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.ModuleList) and (name == path or name.endswith("." + path))]
    if len(hits) != 1:
        found = "none" if not hits else ", ".join(n for n, _ in hits)
        raise LayershareError(f"expected one layer stack matching {path!r} in "
                              f"{type(model).__name__}, found {found}")
    return hits[0]


def explicit_stack(model: nn.Module, path: str, linears=None) -> StackSpec:
    from torch import nn

    """A StackSpec from user arguments; without ``linears`` every ``nn.Linear`` or
    GPT-2 ``Conv1D`` in the first layer is taken, with kind ``linear``."""
    full, layers = find_stack(model, path)
    if linears is None:
        names = [n for n, m in layers[0].named_modules()
                 if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]
        linears = {n: "linear" for n in names}
    pairs = tuple((name, (kinds,) if isinstance(kinds, str) else tuple(kinds))
                  for name, kinds in dict(linears).items())
    if not pairs:
        raise LayershareError(f"no linear layers found in the layers of {path!r}")
    return StackSpec(full, pairs)
