"""Crafted inputs of an audit that ended in a traceback: a run directory's labels.json and
tokenizer.json, a tokenizer larger than the model, a resumed run's optimizer and RNG state,
a model's generation_config.json, a speech manifest's truncated stereo WAV. Each is one line
and exit status 2 (or one LayershareError), nothing changed on disk."""

from __future__ import annotations

import json
import random
import shutil
import wave

import pytest
import tiny_models as T
import torch
import transformers
import yaml
from fault_helpers import assert_one_line, snapshot, text_files, train_sets
from tokenizers import Tokenizer, models, pre_tokenizers

from layershare.cli import main
from layershare.data import load_tokenizer
from layershare.errors import LayershareError


def _own_data(run, names):
    """The run's data files copied into it, its config naming the copies (a run directory
    is read only inside itself)."""
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    for split in ("train", "valid", "test"):
        shutil.copy(cfg["data"][split], run / names[split])
        cfg["data"][split] = str(run / names[split])
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


# -- a classification run's labels.json and tokenizer.json --------------------------------

@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("classes")
    rows = {"train": "a\tthe cat sat\nb\ton a mat\n" * 4, "valid": "a\tthe cat\nb\ta mat\n",
            "test": "b\ton the mat\na\tthe cat sat\n"}
    data = {}
    for split, text in rows.items():
        (base / f"{split}.tsv").write_text(text)
        data[split] = str(base / f"{split}.tsv")
    sets = train_sets(data, steps=2, **{"data.name": "classes", "train.batch_size": 2})
    assert main(["train", "--quiet", *sets, "--out", str(base / "run")]) == 0
    return base / "run"


LABELS = {  # labels.json's new bytes -> words of the one line
    "not-json": (b"{not json", "labels.json: corrupted"),
    "not-utf8": (b'["\xff"]', "labels.json: corrupted"),
    "number": (b"5", "expected a JSON list of distinct class names"),
    "numbers": (b"[1, 2]", "expected a JSON list of distinct class names"),
    "twice": (b'["a", "a", "b"]', "expected a JSON list of distinct class names"),
    "lacks-b": (b'["a"]', "lacks labels of the data: ['b']"),
    "more-classes": (b'["c", "d", "a", "b"]', "labels.json names 4 classes, the model has 2"),
}


@pytest.mark.parametrize("variant", LABELS)
def test_damaged_labels_json(variant, class_run, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(class_run, run)
    _own_data(run, {s: f"{s}.tsv" for s in ("train", "valid", "test")})
    new, words = LABELS[variant]
    (run / "labels.json").write_bytes(new)
    before = snapshot(tmp_path)
    rc, err = cli(["eval", run])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("name, what", [("labels.json", "class names"),
                                        ("tokenizer.json", "tokenizer")])
def test_run_file_symlinked_out_of_the_run(name, what, class_run, tmp_path, cli):
    """The copy outside is intact, yet it is not the run's: refused, not followed."""
    run = tmp_path / "run"
    shutil.copytree(class_run, run)
    _own_data(run, {s: f"{s}.tsv" for s in ("train", "valid", "test")})
    outside = tmp_path / "outside.json"
    shutil.move(run / name, outside)
    (run / name).symlink_to(outside)
    before = snapshot(tmp_path)
    rc, err = cli(["eval", run])
    assert_one_line(rc, err, f"{what} '{name}' lies outside the directory")
    assert snapshot(tmp_path) == before


# -- a language-model run: a larger tokenizer, a resumed run's state.pt -------------------

@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("lm")
    sets = train_sets(text_files(base / "data"))
    assert main(["train", "--quiet", *sets, "--out", str(base / "run")]) == 0
    return base / "run", sets


def test_tokenizer_larger_than_the_model(lm_run, tmp_path, cli):
    """A run's tokenizer.json swapped for one of 1,000 tokens (the model has 280): its ids
    would index past the embedding, under ``eval RUN`` and ``generate RUN``."""
    from layershare.data import train_tokenizer

    run = tmp_path / "run"
    shutil.copytree(lm_run[0], run)
    _own_data(run, {s: f"{s}.txt" for s in ("train", "valid", "test")})
    rng = random.Random(0)
    words = ["".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(7)) for _ in range(150)]
    text = [" ".join(rng.sample(words, 8)) for _ in range(100)]
    big = train_tokenizer(text, 1000, tmp_path / "big.json", min_frequency=1)
    for target in (run / "tokenizer.json", run / "model" / "tokenizer.json"):
        shutil.copy(big, target)
    (run / "test.txt").write_text("\n".join(text) + "\n")
    assert max(load_tokenizer(big).encode(text[0]).ids) >= 280  # the fault is there
    before = snapshot(tmp_path)
    rc, err = cli(["eval", run])
    assert_one_line(rc, err, "the run's tokenizer on the test split", "has 280 tokens")
    rc, err = cli(["generate", run, "--prompt", text[0], "--max-new-tokens", "2"])
    assert_one_line(rc, err, "the prompt: the tokenizer gives id", "has 280 tokens")
    assert snapshot(tmp_path) == before


def test_translate_with_a_tokenizer_larger_than_the_model(tmp_path):
    """``translate RUN``'s decoding (train/decode.py): the same check on the source ids."""
    from layershare.data import train_tokenizer
    from layershare.models import Seq2Seq, Seq2SeqConfig
    from layershare.train.decode import translate_lines

    words = [f"w{i}x{i * 7}" for i in range(300)]
    big = train_tokenizer([" ".join(words)] * 3, 1000, tmp_path / "big.json", min_frequency=1)
    model = Seq2Seq(Seq2SeqConfig(vocab_size=280, d_model=16, n_heads=2, d_ff=32,
                                  encoder_layers=1, decoder_layers=1, max_len=32))
    with pytest.raises(LayershareError, match="the source text: the tokenizer gives id"):
        translate_lines(model, load_tokenizer(big), [" ".join(words[:5])], "cpu")


def _wrong_moment(state):
    moments = state["optimizer"]["state"][0]
    moments["exp_avg"] = torch.zeros(7, 3)


def _no_groups(state):
    state["optimizer"]["param_groups"] = []


def _bad_rng(state):
    state["rng"] = [{"cpu": torch.zeros(3, dtype=torch.uint8)}]


@pytest.mark.parametrize("damage, words", [
    (_no_groups, "its optimizer state does not fit the model (loaded state dict has a "
                 "different number of parameter groups)"),
    (_wrong_moment, "its optimizer state does not fit the model (a moment of another shape"),
    (_bad_rng, "not a training state"),
])
def test_resume_with_a_state_of_another_model(damage, words, lm_run, tmp_path, cli):
    run = tmp_path / "run"
    shutil.copytree(lm_run[0], run)
    path = run / "checkpoints" / "last" / "state.pt"
    state = torch.load(path, weights_only=True)
    damage(state)
    torch.save(state, path)
    before = snapshot(tmp_path)
    rc, err = cli(["train", "--quiet", *lm_run[1], "--set", "train.steps=6", "--out", run])
    assert_one_line(rc, err, "state.pt: ", words)
    assert snapshot(tmp_path) == before


# -- a transformers directory's generation_config.json ------------------------------------

@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    """A GPT-2 with a word-level tokenizer (test_cli_generate.py's)."""
    path = tmp_path_factory.mktemp("gen") / "gpt2"
    words = ["[UNK]", "the", "cat", "sat", "on", "mat"] + [f"w{i}" for i in range(T.VOCAB - 6)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    model = T.gpt2().eval()
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]") \
        .save_pretrained(path)
    return path


@pytest.mark.parametrize("settings, words", [
    ({"penalty_alpha": 0.6, "top_k": 4}, "asks for contrastive search, which transformers"),
    ({"dola_layers": "low"}, "asks for dola generation"),
])
def test_generation_config_of_a_mode_not_run(settings, words, gpt2_dir, tmp_path, cli):
    src = tmp_path / "gpt2"
    shutil.copytree(gpt2_dir, src)
    path = src / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **settings}))
    before = snapshot(tmp_path)
    rc, err = cli(["generate", src, "--prompt", "the cat", "--max-new-tokens", "2"])
    assert_one_line(rc, err, words)
    assert snapshot(tmp_path) == before


# -- a speech manifest's WAV ---------------------------------------------------------------

@pytest.mark.parametrize("channels, cut", [(2, 2), (1, 1), (2, 1)])
def test_wav_ending_inside_a_frame(channels, cut, tmp_path):
    """A truncated 16-bit WAV whose data ends inside a frame (a stereo file one sample short,
    an odd byte): numpy cannot split its bytes into samples and channels."""
    from layershare.data.manifest import read_manifest_file

    wav_path = tmp_path / "a.wav"
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\1\0" * channels * 1000)
    wav_path.write_bytes(wav_path.read_bytes()[:-cut])
    (tmp_path / "clips.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "hi"}) + "\n")
    with pytest.raises(LayershareError, match="a.wav: truncated") as info:
        read_manifest_file(tmp_path / "clips.jsonl")
    assert "\n" not in str(info.value)
