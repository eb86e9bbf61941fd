"""ShareConfig: every choice ``convert`` makes, in one serialisable dataclass.

A converted model carries its config as ``model.layershare_config``; checkpoints store it as
JSON, and ``load`` rebuilds the same structure from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .arch import KINDS
from .errors import LayershareError
from .schema import check_fields

#: How the shared matrix of a group is initialised (svd.pick_shared).
INITS = ("mean", "first", "stepwise", "scratch")

METHODS = ("residual", "lowrank", "tied")
STACKS = ("all", "encoder", "decoder")


@dataclass
class ShareConfig:
    method: str = field(metadata={"help": "residual (ResidualTransformer), lowrank "
                                          "(LightFormer / Basis Sharing) or tied (ALBERT-style)"})
    group_size: int = field(default=2, metadata={"help": "K: layers per sharing group"})
    rank: int = field(default=64, metadata={"help": "r of the low-rank factors, capped at "
                                                    "min(m, n) per matrix; unused by tied; "
                                                    "residual rank 0 = shared + diagonal only"})
    strategy: str | list[int] = field(default="sequence", metadata={
        "help": "sequence | cycle | cycle-rev | sandwich, or a list of group ids per layer"})
    init: str = field(default="mean", metadata={
        "help": "shared weight of a group from dense weights: mean | first | stepwise; "
                "scratch = from scratch: residual layers of a group start equal to the "
                "shared weight, lowrank factors are random (no SVD)"})
    diag: bool | None = field(default=None, metadata={
        "help": "per-layer diagonal; default on for residual, off for lowrank"})
    matrices: list[str] = field(default_factory=lambda: list(KINDS), metadata={
        "help": "which matrices to share: any of q, k, v, o, ffn_in, ffn_out"})
    tie_other: bool = field(default=True, metadata={
        "help": "tied only: also tie the layer's other parameters (norms), as ALBERT does"})
    stack: str | None = field(default=None, metadata={
        "help": "path of the layer ModuleList, for architectures layershare does not know"})
    linears: dict[str, str | list[str]] | None = field(default=None, metadata={
        "help": "with stack: {name inside a layer: kind or kinds}"})
    ranks: dict[str, dict[str, list[int]]] | None = field(default=None, metadata={
        "help": "per-matrix ranks that override rank: {stack path: {matrix name: [rank of "
                "layer 0, layer 1, ...]}} (written by compress --keep; lowrank groups use "
                "the rank of their first layer)"})
    stacks: str = field(default="all", metadata={
        "help": "which stacks of an encoder-decoder model to share: all | encoder | decoder"})

    def __post_init__(self):
        check_fields(self)  # types first: diag="no" or group_size="2" are errors, not truthy
        if self.method not in METHODS:
            raise LayershareError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        least = 0 if self.method == "residual" else 1  # residual rank 0: shared + diagonal
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or self.rank < least:
            raise LayershareError(f"rank must be an integer >= {least}, got {self.rank!r}")
        if self.init not in INITS:
            raise LayershareError(f"unknown init {self.init!r}; choose one of {', '.join(INITS)}")
        unknown = set(self.matrices) - set(KINDS) if self.stack is None else set()
        if unknown or not self.matrices:
            raise LayershareError(f"unknown matrices {sorted(unknown) or '[]'}; choose from "
                                  f"{', '.join(KINDS)}")
        if self.linears is not None and self.stack is None:
            raise LayershareError("linears= needs stack= too")
        if self.stacks not in STACKS:
            raise LayershareError(f"unknown stacks {self.stacks!r}; choose one of {', '.join(STACKS)}")
        if self.stacks != "all" and self.stack is not None:
            raise LayershareError("stacks= picks among the architecture's own stacks; with "
                                  "stack= name the one stack to share instead")
        if self.diag is None:
            self.diag = self.method == "residual"
        for path, per_name in (self.ranks or {}).items():
            for name, ranks in per_name.items():
                if not (isinstance(ranks, list) and all(
                        isinstance(r, int) and not isinstance(r, bool) and r >= least for r in ranks)):
                    raise LayershareError(f"ranks[{path!r}][{name!r}] must be a list of integers "
                                          f">= {least}, got {ranks!r}")

    def rank_of(self, stack: str, name: str, layer: int) -> int:
        """The rank of matrix ``name`` in layer ``layer`` of ``stack`` (``ranks`` or ``rank``)."""
        ranks = (self.ranks or {}).get(stack, {}).get(name)
        if ranks is None:
            return self.rank
        if layer >= len(ranks):
            raise LayershareError(f"ranks[{stack!r}][{name!r}] has {len(ranks)} entries, "
                                  f"the stack has more layers")
        return ranks[layer]

    def to_dict(self) -> dict:
        return asdict(self)
