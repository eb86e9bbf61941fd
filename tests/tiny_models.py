"""Tiny random models of every supported architecture (no downloads, built in milliseconds)."""

import torch
import transformers
from torch import nn

VOCAB = 96


def perturb(model: nn.Module, scale: float = 0.05, seed: int = 0) -> nn.Module:
    """Add Gaussian noise to EVERY parameter, biases and norms included, in place.

    Why: a freshly built transformers model has all-zero biases and unit LayerNorm weights,
    under which a merge that drops GPT-2's Conv1D biases, or a save that loses a norm, still
    reproduces the outputs. Every builder below returns a perturbed model."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def gpt2():
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=4, n_head=4)
    return perturb(transformers.GPT2LMHeadModel(cfg))


def llama():
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48,
                                   num_hidden_layers=4, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=True)
    return perturb(transformers.LlamaForCausalLM(cfg))


def bert():
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=4,
                                  num_attention_heads=4, intermediate_size=48,
                                  max_position_embeddings=64)
    return perturb(transformers.BertModel(cfg))


def whisper():
    cfg = transformers.WhisperConfig(vocab_size=VOCAB, num_mel_bins=8, d_model=32,
                                     encoder_layers=4, decoder_layers=4,
                                     encoder_attention_heads=4, decoder_attention_heads=4,
                                     encoder_ffn_dim=48, decoder_ffn_dim=48,
                                     max_source_positions=16, max_target_positions=32,
                                     decoder_start_token_id=1, pad_token_id=0, eos_token_id=2,
                                     bos_token_id=1, begin_suppress_tokens=None,
                                     suppress_tokens=None)
    return perturb(transformers.WhisperForConditionalGeneration(cfg))


def torch_encoder():
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=48, dropout=0.0,
                                       batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=4, enable_nested_tensor=False)
    for p in model.parameters():  # the constructor clones one layer: make the layers differ
        nn.init.normal_(p, std=0.2)
    return model


def torch_transformer():
    return perturb(nn.Transformer(d_model=32, nhead=4, num_encoder_layers=4,
                                  num_decoder_layers=4, dim_feedforward=48, dropout=0.0,
                                  batch_first=True))


def inputs(name: str, batch: int = 2, length: int = 10, seed: int = 0):
    """Keyword arguments for a forward pass of the model ``name``."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    if name == "whisper":
        return {"input_features": torch.randn(batch, 8, 32, generator=g), "decoder_input_ids": ids}
    if name == "torch_encoder":
        return {"src": torch.randn(batch, length, 32, generator=g)}
    if name == "torch_transformer":
        return {"src": torch.randn(batch, length, 32, generator=g),
                "tgt": torch.randn(batch, length - 3, 32, generator=g)}
    return {"input_ids": ids}


def output(model, kwargs) -> torch.Tensor:
    """The tensor a model's forward returns (logits / last hidden state)."""
    out = model(**kwargs)
    if isinstance(out, torch.Tensor):
        return out
    return out.logits if getattr(out, "logits", None) is not None else out.last_hidden_state


BUILDERS = {"gpt2": gpt2, "llama": llama, "bert": bert, "whisper": whisper,
            "torch_encoder": torch_encoder, "torch_transformer": torch_transformer}
