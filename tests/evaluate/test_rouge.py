"""ROUGE-1/2/L F1 on hand-made pairs whose values were counted by hand."""

import builtins

import pytest

from layershare.errors import LayershareError
from layershare.evaluate.rouge import rouge


def test_one_pair_counted_by_hand():
    # ref  the cat sat on the mat / hyp  the cat lay on the mat: 5 of 6 unigrams shared
    # (P = R = 5/6), bigrams the-cat, on-the, the-mat: 3 of 5, LCS "the cat on the mat": 5
    got = rouge(["the cat lay on the mat"], ["the cat sat on the mat"])
    assert got == pytest.approx({"rouge1": 500 / 6, "rouge2": 60.0, "rougeL": 500 / 6})


def test_stemming_and_the_mean_over_pairs():
    # with Porter stemming "cats running" is [cat, run] against [the, cat, run]:
    # ROUGE-1 P = 1, R = 2/3, F = 0.8; ROUGE-2 [cat run] of [the cat, cat run]: F = 2/3
    second = rouge(["Cats running!"], ["The cat runs."])
    assert second == pytest.approx({"rouge1": 80.0, "rouge2": 200 / 3, "rougeL": 80.0})
    both = rouge(["the cat lay on the mat", "Cats running!"],
                 ["the cat sat on the mat", "The cat runs."])
    assert both == pytest.approx({"rouge1": (500 / 6 + 80) / 2, "rouge2": (60 + 200 / 3) / 2,
                                  "rougeL": (500 / 6 + 80) / 2})


def test_empty_and_exact_summaries():
    assert rouge(["", "a b c"], ["a b c", "a b c"]) == pytest.approx(
        {"rouge1": 50.0, "rouge2": 50.0, "rougeL": 50.0})


def test_bad_input_is_a_clear_error():
    with pytest.raises(LayershareError, match="2 summaries but 1 references"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(LayershareError, match="no summaries"):
        rouge([], [])


def test_missing_library_says_what_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_rouge(name, *args, **kwargs):
        if name.startswith("rouge_score"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rouge)
    with pytest.raises(LayershareError, match=r"layershare\[summarisation\]"):
        rouge(["a"], ["a"])
