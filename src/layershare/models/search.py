"""Greedy and beam search for :class:`~layershare.models.seq2seq.Seq2Seq`, with the KV cache.

Beam search follows fairseq's SequenceGenerator (Ott et al., 2019): every step expands the
``k`` live beams of each sentence, keeps the ``2k`` best candidates, finalises those ending in
eos that rank among the top ``k`` and carries the ``k`` best others on. Final hypotheses are
ranked by ``log p / length ** length_penalty`` (length counts the generated tokens, eos
included; ``length_penalty=0`` ranks by raw log-probability). A sentence is done once ``k``
hypotheses are final *and* its best final scores at least ``best live log p / t **
length_penalty`` (transformers' ``early_stopping=False`` test): fairseq stops at ``k`` finals
alone, which ends the search while a live beam can still win -- with raw scores the test is
exact, since log-probabilities only fall. At ``max_len`` the live beams become final without
eos. The batch is handled in tensors, no Python loop over sentences or beams; after each step
the caches are reordered to the surviving beams (``KVCache.reorder``).

With ``k = 1`` this is exactly greedy search, whatever the length penalty. For ``k > 1`` beam
search usually, but not provably, finds a higher-scoring output than greedy: the greedy
prefix can fall out of the beam and the beams that displaced it can end worse.

Pad and bos are never generated (their scores are set to -inf after the log-softmax, so the
scores of what is generated are the model's own log-probabilities).
"""

from __future__ import annotations

import torch
from torch import Tensor

NEG_INF = float("-inf")


def _log_probs(model, token: Tensor, cache):
    """Log-probabilities (rows, vocab) of the next token, and the extended cache."""
    logits, cache = model.decode(token, cache)
    logp = logits[:, -1].float().log_softmax(-1)
    logp[:, [model.config.pad_id, model.config.bos_id]] = NEG_INF
    return logp, cache


def greedy_search(model, src_ids: Tensor, src_mask: Tensor | None, max_len: int) -> Tensor:
    """Argmax decoding; (batch, time) ids, pad after each row's eos."""
    cfg = model.config
    cache = model.start(model.encode(src_ids, src_mask), src_ids, src_mask)
    token = torch.full_like(src_ids[:, :1], cfg.bos_id)
    done = torch.zeros(src_ids.shape[0], dtype=torch.bool, device=src_ids.device)
    out = []
    for _ in range(max_len):
        logp, cache = _log_probs(model, token, cache)
        token = logp.argmax(-1).masked_fill(done, cfg.pad_id)
        out.append(token)
        done |= token == cfg.eos_id
        if bool(done.all()):
            break
        token = token[:, None]
    return torch.stack(out, dim=1)


def beam_search(model, src_ids: Tensor, src_mask: Tensor | None, beam_size: int,
                max_len: int, length_penalty: float = 1.0) -> Tensor:
    """The best final hypothesis per sentence; (batch, time) ids padded with pad_id."""
    cfg, k = model.config, beam_size
    batch, device = src_ids.shape[0], src_ids.device
    rows = torch.arange(batch, device=device)
    # Cross keys/values computed once per sentence, then repeated for its k beams.
    cache = model.start(model.encode(src_ids, src_mask), src_ids, src_mask)
    cache = cache.reorder(rows.repeat_interleave(k))

    tokens = torch.full((batch * k, 1), cfg.bos_id, dtype=torch.long, device=device)
    scores = torch.full((batch, k), NEG_INF, device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    best = torch.full((batch, max_len), cfg.pad_id, dtype=torch.long, device=device)
    best_score = torch.full((batch,), NEG_INF, device=device)
    finished = torch.zeros(batch, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)

    for t in range(1, max_len + 1):  # t: tokens generated after this step
        logp, cache = _log_probs(model, tokens[:, -1:], cache)
        vocab = logp.shape[-1]
        cand = (scores.reshape(-1, 1) + logp).view(batch, k * vocab)
        top, index = cand.topk(2 * k, dim=1)  # (batch, 2k), best first
        beam, token = index // vocab, index % vocab
        history = tokens[:, 1:].view(batch, k, t - 1)

        # Finalise eos candidates ranked in the top k, for sentences not done yet.
        is_eos = token == cfg.eos_id
        final = is_eos & (torch.arange(2 * k, device=device) < k) & ~done[:, None]
        final &= top > NEG_INF
        normed = torch.where(final, top / t ** length_penalty, NEG_INF)
        cand_best, pos = normed.max(dim=1)
        better = cand_best > best_score
        if bool(better.any()):
            seq = history[rows, beam.gather(1, pos[:, None]).squeeze(1)]  # (batch, t-1)
            hyp = torch.cat([seq, torch.full_like(rows[:, None], cfg.eos_id)], dim=1)
            best[better] = cfg.pad_id
            best[better, :t] = hyp[better]
            best_score = torch.where(better, cand_best, best_score)
        finished += final.sum(1)

        # The k best candidates that do not end in eos live on (one eos per beam at most,
        # so k of the 2k always remain).
        scores, pos = torch.where(is_eos, NEG_INF, top).topk(k, dim=1)
        done |= (finished >= k) & (best_score >= scores[:, 0] / t ** length_penalty)
        if bool(done.all()):
            break
        source = (rows[:, None] * k + beam.gather(1, pos)).view(-1)
        tokens = torch.cat([tokens[source], token.gather(1, pos).view(-1, 1)], dim=1)
        cache = cache.reorder(source)

    if not bool(done.all()):  # out of length: live beams become final (without eos)
        normed = torch.where(done[:, None], NEG_INF, scores / t ** length_penalty)
        cand_best, pos = normed.max(dim=1)
        better = cand_best > best_score
        seq = tokens[:, 1:].view(batch, k, t)[rows, pos]
        best[better] = seq[better]
    width = int((best != cfg.pad_id).sum(1).max())
    return best[:, :max(width, 1)]
