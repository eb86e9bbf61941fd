"""Building a model without its weights: every parameter on the meta device.

``layershare.load`` (checkpoint.py) and the layer-by-layer reader (formats/lazy.py) both build
the model's modules first and fill in the stored tensors afterwards; neither may allocate the
dense model on the way. :func:`empty_weights` is the one way they do it.

Why not accelerate's ``init_empty_weights`` alone: it moves each parameter to meta when it is
registered, but a module that initialises a tensor *before* wrapping it as a parameter
(``w = torch.empty(...); nn.init.normal_(w); self.w = nn.Parameter(w)``) writes every page of
it first -- tests/test_load_memory.py measures the difference (its peak memory is the dense
model's with accelerate's manager). So torch's init functions are also disabled inside.
"""

from __future__ import annotations

import contextlib
import importlib

from torch import nn


@contextlib.contextmanager
def empty_weights():
    """Build modules with every parameter on the meta device and buffers where they belong.

    As accelerate's ``init_empty_weights(include_buffers=False)``: each parameter is moved to
    meta as it is registered, with torch's init functions disabled meanwhile, so the CPU
    tensor it was created as is never written (its pages are never touched) and is freed at
    once. Buffers stay real: non-persistent ones (rotary ``inv_freq``...) are computed in
    ``__init__`` and are not in the checkpoint.
    """
    # transformers keeps its own references to torch's init functions, taken when its
    # ``initialization`` module is first imported: were that inside this window, every later
    # model of the process would keep the no-op (buffers such as BERT's token_type_ids left
    # as uninitialised memory). Import it first.
    with contextlib.suppress(ImportError):
        importlib.import_module("transformers.initialization")
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    inits = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS if hasattr(nn.init, name)}
    nn.Module.register_parameter = on_meta
    for name in inits:
        setattr(nn.init, name, _no_init)
    try:
        yield
    finally:
        nn.Module.register_parameter = register
        for name, fn in inits.items():
            setattr(nn.init, name, fn)


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_",
                   "eye_", "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
                   "kaiming_normal_", "orthogonal_", "sparse_")


def _no_init(tensor, *args, **kwargs):
    return tensor



