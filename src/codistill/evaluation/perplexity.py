"""Question-completion perplexity (paper §4): give the model the first 10% of a question's
tokens, report the perplexity of the remaining 90%. Raw text, no chat template."""

from __future__ import annotations

import math


def split_ids(ids: list[int], prefix: float) -> int:
    """Number of context tokens: ceil(prefix * len), at least 1, leaving at least 1 to score."""
    if len(ids) < 2:
        return len(ids)
    return min(len(ids) - 1, max(1, math.ceil(prefix * len(ids))))


def perplexity_from_logprobs(logprobs: list[float]) -> float | None:
    if not logprobs:
        return None
    return math.exp(-sum(logprobs) / len(logprobs))


def question_completion_perplexity(gen, texts: list[str], prefix: float = 0.1, batch_size: int = 8) -> list[float | None]:
    """Per text: exp(mean NLL) of tokens after the first ``prefix`` fraction, in token space.

    ``gen`` is a transformers generator (``gen.model``, ``gen.tokenizer``). The BOS token, when
    the tokenizer adds one, is part of the context.
    """
    import torch

    tok, model = gen.tokenizer, gen.model
    device = next(model.parameters()).device
    seqs, ks = [], []
    for t in texts:
        ids = list(tok(t, add_special_tokens=True)["input_ids"])
        seqs.append(ids)
        ks.append(split_ids(ids, prefix))
    out: list[float | None] = [None] * len(texts)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            width = max(len(seqs[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                ids[r, :len(seqs[i])] = torch.tensor(seqs[i])
                mask[r, :len(seqs[i])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0]
            for r, i in enumerate(chunk):
                k, n = ks[i], len(seqs[i])
                if n - k < 1:
                    continue
                out[i] = perplexity_from_logprobs(lp[r, k - 1:n - 1].tolist())
    return out
