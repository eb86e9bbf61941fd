"""Encoder fidelity: embedding cosine to the original and the logistic-regression probe."""

import copy

import tiny_models as T
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from layershare.evaluate.fidelity import embedding_cosine, probe_accuracy, probe_subsets

WORDS = ["red apple", "green pear", "blue sky", "dark sea", "tall tree", "small stone"]


def _tokenizer():
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(WORDS, trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]",
                                                unk_token="[UNK]")


def test_cosine_is_one_for_the_same_model_and_below_for_a_changed_one():
    tok, model = _tokenizer(), T.bert().eval()
    assert abs(embedding_cosine(model, model, tok, WORDS) - 1) < 1e-6
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.5 * torch.randn_like(p))
    assert embedding_cosine(other, model, tok, WORDS) < 0.99


def test_probe_separates_labels_the_embedding_carries():
    tok, model = _tokenizer(), T.bert().eval()
    rows = [("fruit" if w in ("red apple", "green pear") else "other", w) for w in WORDS] * 20
    subsets = probe_subsets({"train": rows, "test": rows}, train=100, test=40)
    assert len(subsets["train"]) == 100 and len(subsets["test"]) == 40
    assert probe_accuracy(model, tok, subsets) == 1.0  # the same glosses: perfectly separable
