"""Run by test_train_fsdp.py under torchrun (2 processes, gloo): FSDP2 gradients of shared
tensors, checked on every rank against a one-process computation of the same global batch.

Expected gradient of a shared S (ResidualTransformer, K=2): the merged model's dense weight
gradients dL/dW_l (layershare.merge: every W_l = S + A_l B_l + diag(d_l) its own tensor)
summed over the group's layers -- the sum of S's users' gradients, computed independently
of autograd's accumulation into a shared leaf.
"""

import copy
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import VOCAB, gpt2  # noqa: E402

import layershare  # noqa: E402
from layershare.train.fsdp import layer_units, shard  # noqa: E402


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = layershare.convert(gpt2(), "residual", group_size=2, rank=4, init="mean")
    model.config.use_cache = False
    for m in model.modules():  # no dropout: the ranks' forwards must be the reference's
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    x = torch.randint(VOCAB, (4, 12), generator=torch.Generator().manual_seed(1))

    # reference: the merged (dense) model on the whole batch, in this process
    dense = layershare.merge(model, inplace=False)
    dense.train()
    dense(input_ids=x, labels=x).loss.backward()
    layers, dlayers = model.transformer.h, dense.transformer.h
    units = layer_units(model)
    assert sorted(len(u) for u in units) == [2, 2], units  # layers {0,1}, {2,3}

    ref = copy.deepcopy(model).train()  # and the plain residual model, one process
    ref(input_ids=x, labels=x).loss.backward()

    shard(model, bf16=False)
    model.train()
    part = x.chunk(world)[rank]
    model(input_ids=part, labels=part).loss.backward()

    checked = 0
    for g, (a, b) in enumerate(((0, 1), (2, 3))):
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            mod = layers[a].get_submodule(name)
            assert mod.shared is layers[b].get_submodule(name).shared
            users = sum(dlayers[i].get_submodule(name).weight.grad.t() for i in (a, b))
            grad = mod.shared.grad.full_tensor()
            torch.testing.assert_close(grad, users, rtol=1e-4, atol=1e-6, msg=f"{g} {name}")
            checked += 1
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad.full_tensor(), q.grad, rtol=1e-4, atol=1e-6, msg=name)
    (out / f"ok-{rank}").write_text(f"checked {checked} shared tensors\n")
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
