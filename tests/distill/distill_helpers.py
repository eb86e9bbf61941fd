"""Tiny teachers (a Llama LM, a BERT encoder) with their own tokenizers, and students made
from them by ``layershare.convert`` (CPU, milliseconds). A module of its own, not conftest:
several test folders have a conftest."""

from __future__ import annotations

import copy
from pathlib import Path

import tiny_models as T
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

import layershare

WORDS = "the old young tall small cat dog saw ran near wide cold river three five".split()
TEXT = [" ".join(WORDS[(7 * i + 3 * j) % len(WORDS)] for j in range(5 + i % 4))
        for i in range(400)]


def tokenizer(encoder: bool):
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["[UNK]", "[PAD]", "[CLS]", "[SEP]"]
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=T.VOCAB, special_tokens=special))
    if encoder:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
        **({"cls_token": "[CLS]", "sep_token": "[SEP]"} if encoder else {}))


def bert_nodrop():
    cfg = transformers.BertConfig(vocab_size=T.VOCAB, hidden_size=32, num_hidden_layers=4,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=64, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    return T.perturb(transformers.BertModel(cfg))


def make(root: Path, teacher, encoder: bool, **share) -> dict:
    tok = tokenizer(encoder)
    teacher.save_pretrained(root / "teacher")
    tok.save_pretrained(root / "teacher")
    files = {n: root / "teacher" / n for n in ("tokenizer.json", "tokenizer_config.json")}
    same = copy.deepcopy(teacher)
    layershare.save(same, root / "same", extra_files=files)  # a dense checkpoint = teacher
    student = layershare.convert(copy.deepcopy(teacher), **share)
    layershare.save(student, root / "student", extra_files=files)
    (root / "text.txt").write_text("\n".join(TEXT) + "\n")
    return {k: str(root / k) for k in ("teacher", "same", "student")} | {
        "text": str(root / "text.txt")}


def args(pair: dict, out: Path, *extra: str, steps: int = 12) -> list[str]:
    return ["distill", pair["student"], "--teacher", pair["teacher"], "--data", "text",
            pair["text"], "--steps", str(steps), "--seq-len", "16", "--batch-size", "4",
            "--eval-every", "6", "--save-every", "6", "--eval-batches", "2",
            "--eval-windows", "4", "--eval-seq-len", "16", "--lr", "3e-3", "--quiet",
            "--out", str(out), *extra]
