"""FSDP2 for shared-weight models: ``train.parallel: fsdp`` under ``torchrun``.

FSDP2 (``torch.distributed.fsdp.fully_shard``) shards every parameter of a unit (a module
passed to ``fully_shard``) across the ranks, all-gathers the unit's parameters just before
its forward (and again for its backward) and reduce-scatters its gradients right after.
A parameter held by two units would be gathered and reduced by each of them separately --
the known weak spot with tied weights (pytorch issues #77724, #176076: ranks left
un-updated). So the units follow the sharing:

* :func:`layer_units`: in each layer stack, the layers connected by a shared tensor (the K
  layers of a ResidualTransformer / Basis Sharing / tied group) form one unit,
  ``fully_shard([layer_a, layer_b, ...])``; an unshared layer is its own unit. A layer whose
  tensors are shared with something outside its stack stays with the root.
* then ``fully_shard(model)``: the root unit takes everything else (embeddings, the tied
  LM head, final norm).
* :func:`policy`: ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` when the
  run trains in bf16 (the default on CUDA: gathered parameters in bf16, gradients reduced
  in fp32 into fp32 master shards), none (fp32) otherwise -- CPU runs.

Batched merges (:mod:`layershare.bank`) are turned off: a bank spans the whole stack, but
FSDP gathers a unit's parameters only inside that unit's forward.

Checkpoints. The ``last`` checkpoint of an FSDP run holds ``sharded/``, written by every
rank with ``torch.distributed.checkpoint`` (DCP): the model and AdamW state, each rank its
shards (:func:`save_sharded`); a resumed run loads them back shard for shard
(:func:`load_sharded`), so resuming gives an unbroken run's weights. Beside it, as in every
run, ``model/``: the compact checkpoint (``layershare.load``), from the full state dict
gathered on rank 0, which also evaluates and keeps ``best``. :func:`consolidate` (CLI:
``layershare consolidate RUN/checkpoints/last OUT``) rebuilds the compact checkpoint from
``sharded/`` alone and the structure files (``layershare.json``, ``config.json``) -- DCP
reads a checkpoint written by N ranks in one process, resharding as it reads. All ranks
write into the run directory, so several machines need a shared filesystem (as for a DDP
resume, where every rank reads ``model/``).

Limits: the ranks must build identical initial weights (they do: one seed; FSDP2, unlike
DDP, does not broadcast rank 0's); rank 0 holds a full replica for evaluation and compact
checkpoints (fine for models that fit one device, which is what these runs train; a model
that does not fit one device would need sharded evaluation). FSDP2 runs on CPU with gloo in
torch 2.13 (the tests: 2 processes).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from ..bank import set_batched
from ..errors import LayershareError

SHARDED = "sharded"


def layer_units(model: nn.Module) -> list[list[nn.Module]]:
    """Groups of layers to shard together: connected by shared tensors, per stack."""
    from ..surgery import stack_specs

    converted = getattr(model, "layershare_stacks_converted", None)
    try:
        paths = [s.path for s in converted] if converted else [s.path for s in stack_specs(model)]
    except LayershareError:
        return []  # a model without a known stack: the root unit holds everything
    units = []
    for path in paths:
        layers = list(model.get_submodule(path))
        inside = {f"{path}.{i}." for i in range(len(layers))}
        outside = {id(p) for name, p in model.named_parameters(remove_duplicate=False)
                   if not any(name.startswith(prefix) for prefix in inside)}
        owner = list(range(len(layers)))  # union-find over the layers

        def find(i):
            while owner[i] != i:
                owner[i] = owner[owner[i]]
                i = owner[i]
            return i

        first: dict[int, int] = {}
        for i, layer in enumerate(layers):
            for p in layer.parameters():
                j = first.setdefault(id(p), i)
                owner[find(i)] = find(j)
        groups: dict[int, list[int]] = {}
        for i in range(len(layers)):
            groups.setdefault(find(i), []).append(i)
        for members in groups.values():
            ids = {id(p) for i in members for p in layers[i].parameters()}
            if not ids & outside:
                units.append([layers[i] for i in members])
    return units


def policy(bf16: bool):
    from torch.distributed.fsdp import MixedPrecisionPolicy
    if bf16:
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard(model: nn.Module, bf16: bool) -> nn.Module:
    """``fully_shard`` each sharing unit, then the root (in place; returns ``model``)."""
    from torch.distributed.fsdp import fully_shard

    set_batched(model, False)
    mp = policy(bf16)
    for unit in layer_units(model):
        fully_shard(unit if len(unit) > 1 else unit[0], mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) model state dict on rank 0, on CPU; {} elsewhere. Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True,
                                                                cpu_offload=True))


def save_sharded(directory: Path, model: nn.Module, optimizer) -> None:
    """Every rank writes its shards of the model and AdamW state to ``directory`` (DCP)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(directory))


def load_sharded(directory: Path, model: nn.Module, optimizer) -> None:
    """Read ``directory`` (written by :func:`save_sharded`) into the sharded model and
    optimizer, each rank its own shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from .sharded_meta import describe, read_metadata, safe_planner, safe_reader

    read_metadata(directory)  # refuses a crafted file in one line before DCP sees it
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd}
    try:
        dcp.load(state, storage_reader=safe_reader(directory), planner=safe_planner())
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 -- a BaseException
        raise LayershareError(f"{directory}: sharded checkpoint cannot be read "
                              f"({describe(exc)}); delete {directory.parent} to "
                              "restart") from None
    set_state_dict(model, optimizer, model_state_dict=state["model"],
                   optim_state_dict=state["optim"])


def stage_shards(out: Path, step: int, model: nn.Module, optimizer, d) -> Path:
    """Every rank writes its shards to ``OUT/checkpoints/.sharded-STEP`` (collective), which
    ``state.save_checkpoint`` then moves into the new checkpoint as ``sharded/``. A dot
    name: ``state.recover`` deletes a half-written one after a kill."""
    from .distributed import barrier

    stage = Path(out) / "checkpoints" / f".sharded-{step}"
    if d.main and stage.exists():
        shutil.rmtree(stage)
    barrier(d)
    save_sharded(stage, model, optimizer)
    barrier(d)
    return stage


def consolidate(checkpoint: str | os.PathLike, out: str | os.PathLike,
                overwrite: bool = False) -> Path:
    """Write the compact checkpoint of ``checkpoint/sharded`` (an FSDP run's ``last``) to
    ``out``. Only the structure files of ``checkpoint/model`` are read (no weights), in one
    process, whatever the number of ranks that wrote the shards."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    from ..checkpoint import _rebuild, read_meta, save
    from .sharded_meta import describe, read_metadata, safe_planner, safe_reader

    checkpoint = Path(checkpoint)
    sharded, structure = checkpoint / SHARDED, checkpoint / "model"
    if not (sharded / ".metadata").exists():
        raise LayershareError(f"{checkpoint}: no sharded checkpoint ({sharded}/.metadata); "
                              "expected an FSDP run's checkpoints/last")
    read_metadata(sharded)  # never unpickles anything but DCP's plain metadata
    model = _rebuild(structure, read_meta(structure), None)
    state = {"model": model.state_dict()}
    try:
        with warnings.catch_warnings():  # "assuming the intent is to load in a single process"
            warnings.simplefilter("ignore", UserWarning)
            dcp.load(state, storage_reader=safe_reader(sharded), planner=safe_planner(),
                     no_dist=True)
    except (Exception, CheckpointException) as exc:  # noqa: BLE001 -- a BaseException
        raise LayershareError(f"{sharded}: cannot be read ({describe(exc)})") from None
    model.load_state_dict(state["model"])
    return save(model.eval(), out, overwrite=overwrite)
