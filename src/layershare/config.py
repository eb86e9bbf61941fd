"""ShareConfig: every choice ``convert`` makes, in one serialisable model.

A converted model carries its config as ``model.layershare_config``; checkpoints store it as
JSON, and ``load`` rebuilds the same structure from it. A training run's ``share:`` section
(:class:`layershare.train.sections.ShareSection`) is this model with the run's own methods
and keys added, so every key here is a key there too.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from .arch import KINDS
from .configbase import Bad, Bool, Int, Section, Str
from .errors import LayershareError

Init = Literal["mean", "first", "stepwise", "scratch"]
Method = Literal["residual", "lowrank", "tied"]
Stacks = Literal["all", "encoder", "decoder"]

#: How the shared matrix of a group is initialised (svd.pick_shared).
INITS = get_args(Init)
METHODS = get_args(Method)
STACKS = get_args(Stacks)


class ShareConfig(Section):
    """Every option of ``convert`` (``convert(model, method=..., rank=...)`` builds one from
    its keywords). A mistake is a one-line LayershareError before any weight is touched:
    converting a large model and failing half-way on a typo would waste the work."""

    method: Method = Field(description="residual (ResidualTransformer), lowrank (LightFormer / "
                                       "Basis Sharing) or tied (ALBERT-style)")
    group_size: Int = Field(2, ge=1, description="K: layers per sharing group")
    rank: Int = Field(64, description="r of the low-rank factors, capped at min(m, n) per "
                                      "matrix; unused by tied; residual rank 0 = shared + "
                                      "diagonal only")
    strategy: Str | list[Int] = Field("sequence", description=(
        "sequence | cycle | cycle-rev | sandwich, or a list of group ids per layer"))
    init: Init = Field("mean", description=(
        "shared weight of a group from dense weights: mean | first | stepwise; scratch = "
        "from scratch: residual layers of a group start equal to the shared weight, lowrank "
        "factors are random (no SVD)"))
    diag: Bool | None = Field(None, description="per-layer diagonal; default on for residual, "
                                                "off for lowrank")
    matrices: list[Str] = Field(default_factory=lambda: list(KINDS), description=(
        "which matrices to share: any of q, k, v, o, ffn_in, ffn_out"))
    tie_other: Bool = Field(True, description="tied only: also tie the layer's other "
                                              "parameters (norms), as ALBERT does")
    stack: Str | None = Field(None, description="path of the layer ModuleList, for "
                                                "architectures layershare does not know")
    linears: dict[Str, Str | list[Str]] | None = Field(None, description=(
        "with stack: {name inside a layer: kind or kinds}"))
    ranks: dict[Str, dict[Str, list[Int]]] | None = Field(None, description=(
        "per-matrix ranks that override rank: {stack path: {matrix name: [rank of layer 0, "
        "layer 1, ...]}} (written by compress --keep; lowrank groups use the rank of their "
        "first layer)"))
    stacks: Stacks = Field("all", description="which stacks of an encoder-decoder model to "
                                              "share: all | encoder | decoder")

    @model_validator(mode="after")
    def _rules(self):
        """Rules across keys; ``rank`` and ``ranks`` only for the methods that convert (a
        run's ``share:`` section also has dense and dlt, which never reach convert)."""
        least = 0 if self.method == "residual" else 1  # residual rank 0: shared + diagonal
        converts = self.method in METHODS
        if converts and self.rank < least:
            raise Bad(f"rank must be an integer >= {least} for method {self.method}, "
                      f"got {self.rank!r}")
        unknown = set(self.matrices) - set(KINDS) if self.stack is None else set()
        if unknown or not self.matrices:
            raise Bad(f"matrices: unknown matrices {sorted(unknown) or '[] (none)'}; choose "
                      f"from {', '.join(KINDS)}")
        if self.linears is not None and self.stack is None:
            raise LayershareError("linears= needs stack= too")
        if self.stacks != "all" and self.stack is not None:
            raise LayershareError("stacks= picks among the architecture's own stacks; with "
                                  "stack= name the one stack to share instead")
        for path, per_name in (self.ranks or {}).items():
            for name, ranks in per_name.items():
                if converts and any(r < least for r in ranks):
                    raise Bad(f"ranks[{path!r}][{name!r}] must be a list of integers "
                              f">= {least}, got {ranks!r}")
        self._default_diag()
        return self

    def _default_diag(self) -> None:
        """``diag: None`` means the method's own default, resolved here so that a saved
        checkpoint states what was built."""
        if self.diag is None:
            self.diag = self.method == "residual"

    def rank_of(self, stack: str, name: str, layer: int) -> int:
        """The rank of matrix ``name`` in layer ``layer`` of ``stack`` (``ranks`` or ``rank``)."""
        ranks = (self.ranks or {}).get(stack, {}).get(name)
        if ranks is None:
            return self.rank
        if layer >= len(ranks):
            raise LayershareError(f"ranks[{stack!r}][{name!r}] has {len(ranks)} entries, "
                                  "the stack has more layers")
        return ranks[layer]
