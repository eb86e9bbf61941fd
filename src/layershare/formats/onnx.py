"""Export to ONNX: a model ONNX Runtime serves, with every shared tensor stored once.

    from layershare.formats.onnx import export
    export("compact/", "deploy/")                    # fp32
    export("compact/", "deploy-int8/", quantize="int8")

The output directory holds ``model.onnx`` (the graph) and ``model.onnx.data`` (its
initializers), the source's tokenizer files and ``config.json``, and :data:`META`
(``onnx.json``: task, input and output names, the cache shapes, sizes and the checks' figures).
Graph layouts: :mod:`layershare.formats.onnx_export`. What the export checks before the
directory appears (a failed check leaves no output, :mod:`layershare.outputs`):

1. each shared tensor is one initializer (:mod:`layershare.formats.onnx_check`, by content
   hash, transposed copies included) -- fail otherwise;
2. ONNX Runtime's outputs on an example input equal PyTorch's (fp32: within
   :data:`FP32_TOLERANCE` of the largest logit magnitude) -- fail otherwise;
3. with ``quantize="int8"`` or ``"int4"`` (:mod:`layershare.formats.onnx_quantize`), each
   quantized tensor is again stored once, and the quantized outputs are reported against
   fp32 (not failed: how close they get is the user's call; ``onnx.json`` records it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import LayershareError, first_line
from ..outputs import atomic_directory, check_out

ONNX_FILE = "model.onnx"
DEFAULT_OPSET = 18
META = "onnx.json"
FORMATS = ("onnx",)
QUANTIZE = ("int8", "int4")  # weight-only, blockwise (formats/onnx_quantize.py)
FP32_TOLERANCE = 1e-4  # relative to max |output|: ORT and PyTorch differ by float round-off


def _writable(out: Path) -> None:
    """Refuse an --out whose nearest existing ancestor cannot be written, before any work."""
    probe = out.expanduser().absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise LayershareError(f"cannot write {out}: permission denied in {probe}")


def load_source(src):
    """(model, tokenizer source) of a layershare checkpoint, transformers dir or short name."""
    from ..checkpoint import META as CHECKPOINT_META
    from ..checkpoint import load
    from .gate import admit
    from .hub import from_local
    from .pretrained import resolve

    path = resolve(src)
    if not path.exists():
        raise LayershareError(f"{src}: no such file or directory")
    if path.is_dir() and (path / CHECKPOINT_META).is_file():
        admit(path)  # the loader gate, before the export's work (its tokenizer files too)
        return load(path), path
    return from_local(path), path


def ort_session(path: str | Path, threads: int | None = None, prepack: bool = True):
    """An ONNX Runtime CPU session of ``path``. ``prepack=False`` keeps kernels from packing
    their own copy of each constant weight (``session.disable_prepacking``): a weight that K
    nodes read is then resident once, at some speed cost."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except ort_errors() as exc:
        raise LayershareError(f"{path}: ONNX Runtime cannot load it ({type(exc).__name__}: "
                              f"{first_line(exc)[:200]})") from None


def ort_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception classes (pybind's ``Fail``, ``InvalidGraph``,
    ``InvalidArgument``...): what it raises for a damaged graph or a bad feed."""
    try:
        from onnxruntime.capi import onnxruntime_pybind11_state as state
    except ImportError:
        return ()
    return tuple(v for v in vars(state).values()
                 if isinstance(v, type) and issubclass(v, Exception))


def compare(path: Path, model, feed) -> float:
    """Largest |ORT - PyTorch| over the graph's outputs on ``feed``, relative to the largest
    |PyTorch| output."""
    from .onnx_export import torch_outputs

    expected = [t.numpy() for t in torch_outputs(model, feed)]
    got = ort_session(path).run(None, {k: v.numpy() for k, v in feed.items()})
    scale = max(float(np.abs(e).max()) for e in expected) or 1.0
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected)) / scale


def export(src, out, format: str = "onnx", opset: int = DEFAULT_OPSET,
           quantize: str | None = None, overwrite: bool = False, progress=print) -> Path:
    """Export ``src`` (a layershare checkpoint, a transformers directory or a short name) to
    the directory ``out``; returns ``out``. See the module docstring."""
    if format not in FORMATS:
        raise LayershareError(f"unknown export format {format!r}; choose one of "
                              f"{', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise LayershareError(f"unknown --quantize {quantize!r}; choose one of "
                              f"{', '.join(QUANTIZE)}")
    if not 14 <= opset <= 23:
        raise LayershareError(f"--opset {opset}: choose an opset from 14 to 23")
    out = check_out(out, "onnx", sources=[src], overwrite=overwrite)
    _writable(out)
    model, tok_src = load_source(src)
    progress(f"exporting {type(model).__name__} to ONNX (opset {opset})")

    def write(tmp: Path) -> None:
        from ..checkpoint import unique_state
        from .hub import save_tokenizer
        from .onnx_check import check_shared_once
        from .onnx_export import export_graph, sample_inputs

        info = export_graph(model, tmp / ONNX_FILE, opset)
        tensors = {k: v.float().numpy() for k, v in unique_state(model).items()}
        sizes = check_shared_once(tmp / ONNX_FILE, tensors)
        feed = sample_inputs(model, info["task"], seed=1)
        error = compare(tmp / ONNX_FILE, model, feed)
        if not error <= FP32_TOLERANCE:
            raise LayershareError(f"export: ONNX Runtime's outputs differ from PyTorch's by "
                                  f"{error:.2e} (relative), more than {FP32_TOLERANCE}")
        meta = dict(info, format=1, quantize=None, fp32=dict(sizes, max_rel_error=error),
                    source=str(src), model_class=type(model).__name__)
        if quantize is not None:
            from .onnx_quantize import quantize_weights
            qsizes = quantize_weights(tmp / ONNX_FILE, bits=int(quantize[3:]))
            meta.update({"quantize": quantize, quantize: dict(qsizes, max_rel_error=compare(
                tmp / ONNX_FILE, model, feed))})
        save_tokenizer(tok_src, tmp)
        model.config.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")

    atomic_directory(out, write)
    return out


def quantize_export(src: str | Path, out: str | Path, quantize: str) -> Path:
    """A quantized copy (``int8`` | ``int4``) of the fp32 export ``src`` in ``out``, without
    exporting again: the graph and its side files copied, the weights rewritten
    (:func:`~layershare.formats.onnx_quantize.quantize_weights`), ``onnx.json`` updated.
    Written atomically; ``out`` replaced if it is an earlier export."""
    import shutil

    from .onnx_quantize import quantize_weights

    if quantize not in QUANTIZE:
        raise LayershareError(f"unknown quantization {quantize!r}; choose one of "
                              f"{', '.join(QUANTIZE)}")
    src = Path(src)
    meta = json.loads((src / META).read_text())
    if meta.get("quantize") is not None:
        raise LayershareError(f"{src} is quantized already ({meta['quantize']})")
    out = check_out(out, "onnx", sources=[src], overwrite=True)

    def write(tmp: Path) -> None:
        for f in src.iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        sizes = quantize_weights(tmp / ONNX_FILE, bits=int(quantize[3:]))
        (tmp / META).write_text(json.dumps({**meta, "quantize": quantize, quantize: sizes},
                                           indent=2) + "\n")

    return atomic_directory(out, write)
