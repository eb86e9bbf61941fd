"""EncoderClassifier: shapes, pooling, padding invariance."""

import pytest
import torch
from reference_helpers import classifier, ids, make_variant, sharpen

PAD = 0


@pytest.mark.parametrize("pool", ["mean", "first"])
def test_shapes_and_loss(pool):
    model = classifier(pool=pool, n_classes=3)
    x = ids(4, 6)
    assert model(x).shape == (4, 3)
    loss = model.loss(x, torch.tensor([0, 1, 2, 1]))
    loss.backward()
    assert model.encoder.layers[0].attn.q_proj.weight.grad is not None


@pytest.mark.parametrize("pos", ["learned", "rope"])
@pytest.mark.parametrize("pool", ["mean", "first"])
@pytest.mark.parametrize("method", [None, "residual", "tied"])
def test_padding_does_not_change_logits(pos, pool, method):
    model = make_variant(sharpen(classifier(pos, pool=pool)), method, "sequence")
    x = ids(2, 5)
    padded = torch.cat([x, torch.full((2, 4), PAD)], dim=1)
    with torch.no_grad():
        ref = model(x)
        torch.testing.assert_close(model(padded), ref, rtol=1e-5, atol=1e-5)
        mask = (torch.arange(9) < 5).expand(2, 9)  # explicit mask over non-pad garbage
        garbage = torch.cat([x, ids(2, 4, seed=3)], dim=1)
        torch.testing.assert_close(model(garbage, mask), ref, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model(garbage), ref)


def test_bad_pool():
    from layershare import LayershareError
    with pytest.raises(LayershareError, match="pool"):
        classifier(pool="max")
