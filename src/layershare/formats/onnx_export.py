"""The torch side of the ONNX export: graph wrappers and ``torch.onnx.export``.

Two graph layouts (the input and output names of Optimum's ONNX exports, so that tools that
read those find theirs):

* ``causal-lm`` (Llama, GPT-2 and look-alikes): inputs ``input_ids``, ``attention_mask``
  (past + new tokens), ``position_ids`` and, per layer ``i``, ``past_key_values.i.key`` /
  ``.value`` (batch x kv-heads x past x head-dim); outputs ``logits`` and
  ``present.i.key`` / ``.value`` (past + new). A first step passes a past of length 0; each
  later step feeds the presents back, so ONNX Runtime generates token by token.
* ``encoder`` (BERT, MiniLM): inputs ``input_ids``, ``attention_mask`` [, ``token_type_ids``];
  output ``last_hidden_state``.

Why not Optimum: ``optimum-onnx`` 0.1.0 (the current release) requires
``transformers<4.58``; layershare runs on transformers 5, so the cache plumbing is the
:class:`DecoderWithPast` wrapper below (a transformers ``DynamicCache`` filled from the flat
past tensors).

Shared tensors: ``torch.onnx.export(dynamo=True)`` makes one initializer per parameter
*object*, so a tensor that K layers hold is stored once. Two things would still copy one,
and are avoided here: (1) a weight read by ``F.linear`` on a 3-D input becomes
``MatMul(x, Transpose(W))``, and the exporter's optimiser folds the transpose into a new
initializer -- for the tied input/output embedding of Llama or GPT-2 that is a second copy of
the largest matrix. The wrapper therefore computes the logits as ``F.linear`` on 2-D rows
(``Gemm(transB=1)``, which reads W as stored). (2) ResidualLinear picks its path from the
number of rows, a branch a dynamic-shape graph cannot hold; the export fixes the factored
path (``x S^T + (x B^T) A^T + d x``: no dense weight is built at run time, S is read as is).
:mod:`layershare.formats.onnx_check` verifies the result by content hash.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LayershareError


def task_of(model: nn.Module) -> str:
    """``"causal-lm"`` or ``"encoder"``; anything else cannot be exported (one line)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "base_model"):
        raise LayershareError(f"export --format onnx supports transformers models, not a "
                              f"{type(model).__name__}")
    if getattr(config, "is_encoder_decoder", False):
        raise LayershareError(f"export --format onnx: {type(model).__name__} is an "
                              "encoder-decoder model; only decoder LMs and encoders export")
    can_generate = getattr(model, "can_generate", lambda: False)()
    if can_generate and model.get_output_embeddings() is not None:
        return "causal-lm"
    if can_generate:
        raise LayershareError(f"export --format onnx: {type(model).__name__} generates but has "
                              "no output embeddings")
    return "encoder"


class DecoderWithPast(nn.Module):
    """``(input_ids, attention_mask, position_ids, *flat_past) -> (logits, *flat_present)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # the only submodule: initializers are named model.<state-dict name>
        self.num_layers = model.config.num_hidden_layers

    @property
    def base(self) -> nn.Module:
        return self.model.base_model

    @property
    def head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        for i in range(self.num_layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.base(input_ids=input_ids, attention_mask=attention_mask,
                        position_ids=position_ids, use_cache=True, **_cache_kwarg(self.base, cache))
        hidden = out.last_hidden_state
        rows = hidden.reshape(-1, hidden.shape[-1])  # 2-D: Gemm(transB=1) reads W as stored
        if isinstance(self.head, nn.Linear):
            logits = F.linear(rows, self.head.weight, self.head.bias)
        else:
            logits = self.head(rows)
        logits = logits.reshape(*hidden.shape[:-1], logits.shape[-1])
        present = []
        for layer in _cache_of(out).layers[:self.num_layers]:
            present += [layer.keys, layer.values]
        return (logits, *present)


def _cache_kwarg(base: nn.Module, cache) -> dict:
    """transformers 5.x names the argument ``cache`` (``past_key_values`` is deprecated)."""
    import inspect

    params = inspect.signature(base.forward).parameters
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def _cache_of(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


class EncoderHidden(nn.Module):
    """``(input_ids, attention_mask[, token_type_ids]) -> last_hidden_state``."""

    def __init__(self, model: nn.Module, token_types: bool):
        super().__init__()
        self.model, self.token_types = model, token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {"token_type_ids": token_type_ids} if self.token_types else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask,
                          **kwargs).last_hidden_state


def past_names(num_layers: int) -> tuple[list[str], list[str]]:
    names = [f"past_key_values.{i}.{kv}" for i in range(num_layers) for kv in ("key", "value")]
    return names, [n.replace("past_key_values", "present") for n in names]


def _kv_shapes(model: nn.Module, ids: torch.Tensor) -> list[tuple[int, ...]]:
    """(kv-heads, head-dim) of each layer's cache, read from one forward (no config maths)."""
    with torch.no_grad():
        out = model.base_model(input_ids=ids, use_cache=True)
    return [(layer.keys.shape[1], layer.keys.shape[3]) for layer in _cache_of(out).layers]


def sample_inputs(model: nn.Module, task: str, batch: int = 2, seq: int = 3, past: int = 4,
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """Named example inputs of the graph (sizes 2, 3, 4: torch.export specialises 0 and 1)."""
    g = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    if task == "encoder":
        feed = {"input_ids": ids, "attention_mask": torch.ones(batch, seq, dtype=torch.long)}
        if _has_token_types(model):
            feed["token_type_ids"] = torch.zeros(batch, seq, dtype=torch.long)
        return feed
    feed = {"input_ids": ids,
            "attention_mask": torch.ones(batch, past + seq, dtype=torch.long),
            "position_ids": torch.arange(past, past + seq).expand(batch, seq).contiguous()}
    names, _ = past_names(model.config.num_hidden_layers)
    shapes = _kv_shapes(model, ids[:1, :2])
    for i, name in enumerate(names):
        heads, dim = shapes[i // 2]
        feed[name] = torch.randn(batch, heads, past, dim, generator=g)
    return feed


def _has_token_types(model: nn.Module) -> bool:
    return getattr(model.config, "type_vocab_size", 0) > 0 and hasattr(
        getattr(model.base_model, "embeddings", None), "token_type_embeddings")


def _to_fp32(model: nn.Module) -> None:
    """Parameters and floating buffers in fp32, in place (``model.float()`` is refused by
    transformers for a model it loaded from a quantized GGUF, which it de-quantized already)."""
    with torch.no_grad():
        for t in (*model.parameters(), *model.buffers()):
            if t.is_floating_point() and t.dtype != torch.float32:
                t.data = t.data.float()


@contextlib.contextmanager
def quiet_exporter():
    """torch.onnx's own chatter (deprecation and shape-naming warnings, "torchvision is not
    installed" log lines) is not the user's business: the export prints one summary, and a
    failed export one error line. Restored afterwards."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def export_graph(model: nn.Module, path: Path, opset: int) -> dict:
    """Write the ONNX file ``path`` (+ ``path.data``, the weights) for ``model`` in fp32;
    returns the graph description stored in the export's metadata."""
    from ..residual import set_path

    task = task_of(model)
    _to_fp32(model)
    model.eval()
    feed = sample_inputs(model, task)
    names = list(feed)
    if task == "causal-lm":
        wrapper = DecoderWithPast(model)
        layers = model.config.num_hidden_layers
        past_in, present = past_names(layers)
        outputs = ["logits", *present]
        batch, seq, past = (torch.export.Dim(n) for n in ("batch", "sequence", "past"))
        total = torch.export.Dim("total")
        shapes = ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq},
                  tuple({0: batch, 2: past} for _ in past_in))
        args = (feed["input_ids"], feed["attention_mask"], feed["position_ids"],
                *(feed[n] for n in past_in))
    else:
        wrapper = EncoderHidden(model, "token_type_ids" in feed)
        outputs = ["last_hidden_state"]
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
        shapes = tuple({0: batch, 1: seq} for _ in names)
        args = tuple(feed.values())
    wrapper.eval()
    set_path(model, "factored")
    try:
        with torch.no_grad(), quiet_exporter():
            torch.onnx.export(wrapper, args, str(path), dynamo=True,
                              opset_version=opset, input_names=names, output_names=outputs,
                              dynamic_shapes=shapes, external_data=True, verbose=False,
                              optimize=True)
    finally:
        set_path(model, None)
    _strip_metadata(path)
    info = {"task": task, "opset": opset, "inputs": names, "outputs": outputs}
    if task == "causal-lm":
        info.update(num_layers=layers, past_shapes=[list(feed[n].shape[1:2]) + [
            feed[n].shape[3]] for n in past_in[::2]])
    return info


def _strip_metadata(path: Path) -> None:
    """Drop the exporter's per-node debugging strings (stack traces, FX names): they are
    most of a small model's graph file and nothing a runtime reads. The weights (external
    data) are not touched."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    for node in graph.graph.node:
        del node.metadata_props[:]
    onnx.save_model(graph, str(path))


def torch_outputs(model: nn.Module, feed: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """What the exported graph should return for ``feed``, from the wrapper in PyTorch."""
    task = "encoder" if "position_ids" not in feed else "causal-lm"
    with torch.no_grad():
        if task == "encoder":
            return [EncoderHidden(model, "token_type_ids" in feed)(**feed)]
        args = list(feed.values())
        return list(DecoderWithPast(model)(*args))
