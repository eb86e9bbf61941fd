"""``layershare distill``: the losses by hand, what --trainable lowrank freezes, a student equal
to its teacher, resume after kill -9, and bad input."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from distill_helpers import args
from safetensors.torch import load_file

import layershare
from layershare.cli import main
from layershare.formats.hub import from_local
from layershare.residual import ResidualLinear
from layershare.train import load_config
from layershare.train.distill import hidden_mse, kl_divergence, select_trainable
from layershare.train.report import read_metrics
from layershare.train.state import recover


def test_kl_equals_hand_computation(lm):
    teacher = from_local(lm["teacher"])
    student = layershare.load(lm["student"])
    ids = torch.randint(4, 96, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        s = student(input_ids=ids).logits.double()
        t = teacher(input_ids=ids).logits.double()
    for T in (1.0, 2.0):
        total = 0.0
        for b in range(2):
            for i in range(7):  # sum_v p_v (log p_v - log q_v), p = softmax(t / T)
                p = [math.exp(v / T) for v in t[b, i].tolist()]
                q = [math.exp(v / T) for v in s[b, i].tolist()]
                zp, zq = sum(p), sum(q)
                total += sum(pv / zp * (math.log(pv / zp) - math.log(qv / zq))
                             for pv, qv in zip(p, q))
        expected = T * T * total / 14
        assert kl_divergence(s.float(), t.float(), T).item() == pytest.approx(expected, rel=1e-4)
        assert expected > 0


def test_hidden_mse_ignores_padding():
    s, t = torch.zeros(1, 3, 2), torch.ones(1, 3, 2)
    t[0, 2] = 100.0  # a padding position: must not count
    mask = torch.tensor([[1, 1, 0]])
    assert hidden_mse([s], [t], mask).item() == pytest.approx(1.0)
    assert hidden_mse([s, s], [t, 2 * t], mask).item() == pytest.approx((1 + 4) / 2)


def test_lowrank_freezes_shared_tensors_and_gives_them_no_optimizer_state(tmp_path, lm):
    student = layershare.load(lm["student"])
    shared = {id(m.shared) for m in student.modules() if isinstance(m, ResidualLinear)}
    counts = select_trainable(student, "lowrank")
    by_name = dict(student.named_parameters())
    frozen = {n for n, p in by_name.items() if not p.requires_grad}
    assert shared and all(not p.requires_grad for p in student.parameters() if id(p) in shared)
    assert any("lora_B" in n for n in by_name if n not in frozen)
    assert any("norm" in n for n in by_name if n not in frozen)
    assert "model.embed_tokens.weight" in frozen
    assert counts["trainable_params"] > 0 and counts["frozen_params"] > counts["trainable_params"]

    out = tmp_path / "run"
    assert main(args(lm, out)) == 0
    before = load_file(Path(lm["student"]) / "model.safetensors")
    after = load_file(out / "checkpoints" / "last" / "model" / "model.safetensors")
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and all("lora" in n or "diag" in n or "norm" in n for n in changed), changed
    assert not any(n.endswith(".shared") for n in changed)
    assert not any("embed" in n for n in changed)
    state = torch.load(out / "checkpoints" / "last" / "state.pt", weights_only=True)
    model = layershare.load(out / "checkpoints" / "last" / "model")
    select_trainable(model, "lowrank")
    trainable = [p for p in model.parameters() if p.requires_grad]
    held = [i for g in state["optimizer"]["param_groups"] for i in g["params"]]
    assert len(held) == len(trainable) == len(state["optimizer"]["state"])
    sizes = sorted(v["exp_avg"].numel() for v in state["optimizer"]["state"].values())
    assert sizes == sorted(p.numel() for p in trainable)  # no moment of any frozen tensor

    r = json.loads((out / "results.json").read_text())
    assert r["trainable"] == "lowrank" and r["trainable_params"] == counts["trainable_params"]
    assert r["after"]["kl"] < r["before"]["kl"]
    assert {"perplexity", "kl", "top1"} <= set(r["before"]) and r["teacher_test"]["perplexity"]
    for key in ("unique_params", "train_tokens_per_s", "peak_mem_bytes", "train_tokens"):
        assert r[key] > 0
    assert layershare.load(out / "model").layershare_config.method == "residual"
    assert (out / "model" / "tokenizer.json").is_file() and (out / "loss.png").is_file()


def test_all_trains_the_shared_tensors(tmp_path, lm):
    out = tmp_path / "all"
    assert main(args(lm, out, "--trainable", "all", "--loss", "kl+lm", "--temperature", "2",
                     steps=6)) == 0
    before = load_file(Path(lm["student"]) / "model.safetensors")
    after = load_file(out / "model" / "model.safetensors")
    assert any(not torch.equal(before[n], after[n]) for n in before if n.endswith(".shared"))
    assert not torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])


@pytest.mark.parametrize("pair", ["lm", "encoder"])
def test_student_equal_to_teacher_has_zero_loss(tmp_path, pair, request):
    p = dict(request.getfixturevalue(pair))
    p["student"] = p["same"]
    out = tmp_path / "same"
    assert main(args(p, out, "--trainable", "all", steps=2)) == 0
    rows = read_metrics(out / "metrics.jsonl")
    start = rows[0]  # the valid figure at step 0, before any training
    assert start["step"] == 0 and start["split"] == "valid" and abs(start["loss"]) < 1e-6
    first = next(r for r in rows if r["split"] == "train")  # step 1: the student as given
    assert first["step"] == 1 and abs(first["loss"]) < 1e-6 and first["grad_norm"] < 1e-4, first
    # (later steps are not exactly 0: AdamW scales the round-off gradient up to lr-sized steps)
    r = json.loads((out / "results.json").read_text())
    if pair == "lm":
        assert abs(r["before"]["kl"]) < 1e-6 and r["before"]["top1"] == 1.0
    else:
        assert r["before"]["cosine"] == pytest.approx(1.0, abs=1e-5)


def test_encoder_distillation_moves_towards_the_teacher(tmp_path, encoder):
    out = tmp_path / "enc"
    assert main(args(encoder, out, "--hidden", "all", steps=20)) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["task"] == "distill-encoder"
    assert r["after"]["mse"] < r["before"]["mse"] and r["after"]["cosine"] > r["before"]["cosine"]


def test_resume_after_kill_matches_unbroken_run(tmp_path, lm):
    whole = tmp_path / "whole"
    assert main(args(lm, whole, "--save-every", "2", "--eval-every", "40", steps=80)) == 0
    broken = tmp_path / "broken"
    cmd = [sys.executable, "-m", "layershare"] + args(lm, broken, "--save-every", "2",
                                                      "--eval-every", "40", steps=80)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    info = broken / "checkpoints" / "last" / "info.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(info.read_text())["step"] >= 10:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    recover(broken)
    killed_at = json.loads(info.read_text())["step"]
    assert 10 <= killed_at < 80 and not (broken / "results.json").exists()
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                             env=env)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(whole / "checkpoints" / "last" / "model" / "model.safetensors")
    b = load_file(broken / "checkpoints" / "last" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    steps = [r["step"] for r in read_metrics(broken / "metrics.jsonl") if r["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 80


def _other_vocab(tmp_path):
    import tiny_models as T
    import transformers
    cfg = transformers.LlamaConfig(vocab_size=T.VOCAB + 8, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "vocab")
    return str(tmp_path / "vocab")


def _other_width(tmp_path):
    import tiny_models as T
    import transformers
    cfg = transformers.LlamaConfig(vocab_size=T.VOCAB, hidden_size=48, intermediate_size=48,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "width")
    return str(tmp_path / "width")


@pytest.mark.parametrize("case, message", [
    ("vocab", "different vocabularies"),
    ("width", "different hidden sizes"),
    ("not_layershare", "not a layershare checkpoint"),
    ("missing", "not a layershare checkpoint"),
    ("encoder_teacher", "the student is a language model but the teacher an encoder"),
    ("bad_data", "--data takes brown, espeak-en or 'text FILE'"),
])
def test_bad_input_one_line_exit_2_no_output(tmp_path, lm, encoder, capsys, case, message):
    p = dict(lm)
    if case == "vocab":
        p["teacher"] = _other_vocab(tmp_path)
    elif case == "width":
        p["teacher"] = _other_width(tmp_path)
    elif case == "not_layershare":
        p["student"] = lm["teacher"]  # a transformers directory, not a layershare checkpoint
    elif case == "missing":
        p["student"] = str(tmp_path / "nowhere")
    elif case == "encoder_teacher":
        p["teacher"] = encoder["teacher"]
    out = tmp_path / "out"
    argv = args(p, out)
    if case == "bad_data":
        i = argv.index("--data")
        argv[i + 1:i + 3] = ["text", "a", "b"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("layershare: error: ") and message in err[0], err
    assert not out.exists()


def test_distill_keys_without_a_student_are_refused():
    with pytest.raises(layershare.errors.LayershareError, match="distill.student"):
        load_config(None, ["distill.loss=lm"])


def test_trainable_lowrank_on_a_dense_student_still_trains_norms(lm):
    model = layershare.load(lm["same"])
    counts = select_trainable(model, "lowrank")
    assert counts["trainable_params"] == sum(
        p.numel() for n, p in model.named_parameters() if "norm" in n)


def test_two_processes_equal_one(tmp_path, lm):
    """torchrun DDP (2 CPU processes, gloo), --trainable lowrank (frozen shared tensors under
    DDP): the weights and per-step gradient norms of one process on the same global batch."""
    one = tmp_path / "one"
    assert main(args(lm, one, steps=6)) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "layershare"] + args(lm, tmp_path / "two", steps=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    a = load_file(one / "checkpoints" / "last" / "model" / "model.safetensors")
    b = load_file(tmp_path / "two" / "checkpoints" / "last" / "model" / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5, msg=name)
    norms = [[r["grad_norm"] for r in read_metrics(d / "metrics.jsonl") if r["split"] == "train"]
             for d in (one, tmp_path / "two")]
    assert len(norms[0]) == 6
    torch.testing.assert_close(norms[1], norms[0], rtol=1e-4, atol=0)
    assert json.loads((tmp_path / "two" / "results.json").read_text())["world_size"] == 2
