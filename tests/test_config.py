"""ShareConfig, convert's options: types, ranges, choices, unknown keys, each mistake a
one-line LayershareError; the public behaviour (keywords, to_dict, defaults) of the
dataclass it replaced."""

import pytest
import tiny_models as T

import layershare
from layershare import ShareConfig
from layershare.errors import LayershareError

KEYS = ["method", "group_size", "rank", "strategy", "init", "diag", "matrices", "tie_other",
        "stack", "linears", "ranks", "stacks"]


def error_of(**kwargs) -> str:
    with pytest.raises(LayershareError) as info:
        ShareConfig(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_and_to_dict():
    c = ShareConfig(method="residual")
    assert list(c.to_dict()) == KEYS
    assert c.to_dict() == {"method": "residual", "group_size": 2, "rank": 64,
                           "strategy": "sequence", "init": "mean", "diag": True,
                           "matrices": ["q", "k", "v", "o", "ffn_in", "ffn_out"],
                           "tie_other": True, "stack": None, "linears": None, "ranks": None,
                           "stacks": "all"}
    assert ShareConfig(method="lowrank").diag is False  # diag: on for residual only
    assert ShareConfig(method="tied", diag=True).diag is True
    assert ShareConfig(**c.to_dict()) == c  # what checkpoints store rebuilds the config
    other = ShareConfig(method="residual")
    other.matrices.append("q")
    assert c.matrices == ["q", "k", "v", "o", "ffn_in", "ffn_out"]  # no shared default list
    # tuples where lists are meant (Python callers) become lists
    t = ShareConfig(method="lowrank", strategy=(0, 0, 1), matrices=("q", "k"))
    assert t.strategy == [0, 0, 1] and t.matrices == ["q", "k"]
    assert ShareConfig.help()["tie_other"].startswith("tied only")


def test_ranks_and_rank_of():
    c = ShareConfig(method="lowrank", rank=8, ranks={"model.layers": {"q": [2, 3]}})
    assert (c.rank_of("model.layers", "q", 1), c.rank_of("model.layers", "k", 1)) == (3, 8)
    with pytest.raises(LayershareError, match="has 2 entries"):
        c.rank_of("model.layers", "q", 2)
    assert ShareConfig(method="residual", rank=0, ranks={"h": {"q": [0, 1]}}).rank == 0


@pytest.mark.parametrize("kwargs, line", [
    (dict(method="residual", diag="no"), "diag must be true or false or null, got 'no'"),
    (dict(method="residual", group_size="2"), "group_size must be an integer, got '2'"),
    (dict(method="residual", group_size=True), "group_size must be an integer, got True"),
    (dict(method="lowrank", rank=8.0), "rank must be an integer, got 8.0"),
    (dict(method="tied", tie_other=1), "tie_other must be true or false, got 1"),
    (dict(method="residual", strategy=3),
     "strategy must be a string or a list of integers, got 3"),
    (dict(method="residual", strategy=[0, "a"]),
     "strategy must be a string or a list of integers, got [0, 'a']"),
    (dict(method="residual", matrices="q"), "matrices must be a list of strings, got 'q'"),
    (dict(method="residual", stack=5), "stack must be a string or null, got 5"),
    (dict(method="residual", stack="h", linears={"fc": 3}),
     "linears must be a mapping of strings to strings or lists of strings or null, "
     "got {'fc': 3}"),
    (dict(method="lowrank", ranks={"h": [1, 2]}),
     "ranks must be a mapping of strings to mappings of strings to lists of integers or "
     "null, got {'h': [1, 2]}"),
])
def test_bad_types(kwargs, line):
    assert error_of(**kwargs) == line


@pytest.mark.parametrize("kwargs, line", [
    (dict(method="magic"), "unknown method 'magic'; choose one of residual, lowrank, tied"),
    (dict(method="dense"), "unknown method 'dense'; choose one of residual, lowrank, tied"),
    (dict(method="residual", init="median"),
     "unknown init 'median'; choose one of mean, first, stepwise, scratch"),
    (dict(method="residual", stacks="middle"),
     "unknown stacks 'middle'; choose one of all, encoder, decoder"),
    (dict(method="residual", group_size=0), "group_size must be an integer >= 1, got 0"),
    (dict(method="lowrank", rank=0), "rank must be an integer >= 1 for method lowrank, got 0"),
    (dict(method="tied", rank=0), "rank must be an integer >= 1 for method tied, got 0"),
    (dict(method="residual", rank=-1),
     "rank must be an integer >= 0 for method residual, got -1"),
    (dict(method="lowrank", ranks={"h": {"q": [1, 0]}}),
     "ranks['h']['q'] must be a list of integers >= 1, got [1, 0]"),
    (dict(method="residual", matrices=["qq", "q"]),
     "matrices: unknown matrices ['qq']; choose from q, k, v, o, ffn_in, ffn_out"),
    (dict(method="residual", matrices=[]),
     "matrices: unknown matrices [] (none); choose from q, k, v, o, ffn_in, ffn_out"),
    (dict(method="residual", linears={"fc": "q"}), "linears= needs stack= too"),
    (dict(method="residual", stack="h", stacks="encoder"),
     "stacks= picks among the architecture's own stacks; with stack= name the one stack to "
     "share instead"),
    (dict(group_size=2), "method is required"),
])
def test_out_of_range_choices_and_rules(kwargs, line):
    assert error_of(**kwargs) == line


def test_unknown_keys():
    message = error_of(method="residual", rnak=4)
    assert message == f"unknown config key 'rnak'; known: {', '.join(KEYS)}"
    with pytest.raises(LayershareError, match="unknown config key 'transfer_at_step'"):
        ShareConfig(method="lowrank", transfer_at_step=5)  # a run's key, not convert's
    with pytest.raises(LayershareError, match="unknown config key 'rnak'"):
        layershare.convert(T.llama(), method="residual", rnak=4)
    with pytest.raises(LayershareError, match="convert: unknown option 'rnak'"):
        layershare.convert(T.llama(), config=ShareConfig(method="residual"), rnak=4)


def test_convert_keywords_and_stored_config(tmp_path):
    model = layershare.convert(T.llama(), method="lowrank", rank=2, matrices=("q", "k"),
                               tie_other=False)
    assert isinstance(model.layershare_config, ShareConfig)
    assert model.layershare_config.matrices == ["q", "k"]
    layershare.save(model, tmp_path / "ck")
    again = layershare.load(tmp_path / "ck").layershare_config  # rebuilt without an SVD:
    assert again == model.layershare_config.model_copy(update={"init": "scratch"})
