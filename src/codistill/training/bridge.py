"""The bridge matrix B: student vocabulary → a frozen encoder's input-embedding space.

``B[v]`` is the mean encoder input embedding of the encoder tokens that the encoder's own
tokenizer makes of the decoded text of student token ``v``. A soft distribution ``p`` over the
student vocabulary then becomes a soft encoder input ``p @ B`` that the encoder reads through
``inputs_embeds``: that is what makes the structure loss differentiable.

Rows (``empty[v] = True``, row all zeros):
- the student's special/control tokens (``all_special_ids`` and added tokens flagged special),
- filler rows past the tokenizer (``config.vocab_size`` is the logits width and may exceed
  ``len(tokenizer)``; Qwen pads its head to 151,936) and ``[PAD123]``/``<unused4>`` style fillers,
- tokens whose text maps to no encoder token, or only to encoder special tokens (``[UNK]``,
  ``[CLS]`` ...). Under MiniLM/BERT that is every whitespace/indent token and every byte-fragment
  token (its decoded text is U+FFFD, which BERT's tokenizer drops).
The structure loss masks positions whose *reference* token has an empty row (see
``structure_loss``), so these zero rows never dilute the mean pool.

Building is vectorised (one batched decode, one batched encoder tokenisation, one
``index_add_``): a few seconds for a 152k vocabulary. The result is cached under
``codistill.paths.cache_dir("bridges")`` keyed by the student vocabulary, the logits width, the
encoder's name and a fingerprint of its embedding matrix; stored fp16 (written to a temporary
file and renamed), returned fp32. A fresh build returns the same fp16-rounded values as a
cache hit, so results never depend on whether the cache was warm.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

BRIDGE_VERSION = 1
_FILLER = re.compile(r"^(\[PAD\d+\]|<unused\d+>|<\|reserved_special_token_\d+\|>|<extra_id_\d+>)$")

#: counters the tests (and curious users) read: how many bridges were computed / loaded.
BRIDGE_STATS = {"computed": 0, "loaded": 0, "last_seconds": 0.0, "last_path": ""}


def special_token_mask(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Bool ``[vocab_size]``: True for special/control/filler ids and ids past the tokenizer."""
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    n = min(len(tokenizer), vocab_size)
    mask[n:] = True
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for idx, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", False) or _FILLER.match(str(added)):
            ids.add(int(idx))
    for idx in ids:
        if 0 <= idx < vocab_size:
            mask[idx] = True
    return mask


def token_texts(tokenizer: Any, n: int) -> list[str]:
    """The decoded text of each of the first ``n`` student tokens, decoded one by one.

    SentencePiece-style tokens (``▁foo``) lose their leading space when decoded alone; it is put
    back so that whitespace-aware encoders (byte-level BPE, e.g. CodeBERT) see `` foo``.
    """
    ids = [[i] for i in range(n)]
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "decode_batch"):
        texts = backend.decode_batch(ids, skip_special_tokens=False)
    else:
        texts = tokenizer.batch_decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    raw = tokenizer.convert_ids_to_tokens(list(range(n)))
    return [
        " " + t if isinstance(r, str) and r.startswith("\u2581") and not t.startswith(" ") else t
        for t, r in zip(texts, raw)
    ]


def _encode_texts(encoder_tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Encoder ids of each text, no special tokens, no padding or truncation, batched."""
    backend = getattr(encoder_tokenizer, "_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_batch"):
        from tokenizers import Tokenizer

        # A copy: the shared tokenizer may pad every text to 128 (MiniLM's tokenizer.json
        # does), which makes the batch 3x slower and adds pad ids.
        fresh = Tokenizer.from_str(backend.to_str())
        fresh.no_padding()
        fresh.no_truncation()
        encode = getattr(fresh, "encode_batch_fast", fresh.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]
    out = encoder_tokenizer(texts, add_special_tokens=False, padding=False, truncation=False)
    return list(out["input_ids"])


def _as_matrix(encoder_input_embeddings: Any) -> torch.Tensor:
    weight = getattr(encoder_input_embeddings, "weight", encoder_input_embeddings)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError(
            "encoder_input_embeddings must be a [vocab, dim] tensor or an nn.Embedding "
            "(e.g. encoder.get_input_embeddings())"
        )
    return weight.detach().float().cpu()


def _vocab_fingerprint(tokenizer: Any) -> str:
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    vocab = tokenizer.get_vocab()
    h.update(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False).encode())
    specials = sorted(getattr(tokenizer, "all_special_ids", []) or [])
    h.update(json.dumps(specials).encode())
    return h.hexdigest()


def bridge_key(
    student_tokenizer: Any,
    student_vocab_size: int,
    encoder_tokenizer: Any,
    encoder_input_embeddings: Any,
    encoder_name: str | None = None,
) -> str:
    """Cache key: what determines B (student vocab, logits width, encoder vocab and weights)."""
    weight = _as_matrix(encoder_input_embeddings)
    h = hashlib.sha256()
    h.update(f"bridge-v{BRIDGE_VERSION}|{student_vocab_size}|{encoder_name or ''}|".encode())
    h.update(_vocab_fingerprint(student_tokenizer).encode())
    h.update(_vocab_fingerprint(encoder_tokenizer).encode())
    h.update(str(tuple(weight.shape)).encode())
    h.update(weight.numpy().tobytes())
    return h.hexdigest()


def compute_bridge(
    student_tokenizer: Any,
    student_vocab_size: int,
    encoder_tokenizer: Any,
    encoder_input_embeddings: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compute (B fp32 ``[V_student, d_enc]``, empty bool ``[V_student]``) without any cache."""
    weight = _as_matrix(encoder_input_embeddings)
    n = min(len(student_tokenizer), student_vocab_size)
    special = special_token_mask(student_tokenizer, student_vocab_size)
    texts = token_texts(student_tokenizer, n)
    enc_ids = _encode_texts(encoder_tokenizer, texts)

    lengths = torch.tensor([len(x) for x in enc_ids], dtype=torch.long)
    flat = torch.tensor([i for x in enc_ids for i in x], dtype=torch.long)
    rows = torch.repeat_interleave(torch.arange(n), lengths)
    enc_special = torch.zeros(weight.shape[0], dtype=torch.bool)
    for idx in getattr(encoder_tokenizer, "all_special_ids", []) or []:
        if 0 <= idx < weight.shape[0]:
            enc_special[idx] = True
    keep = (flat < weight.shape[0]) & ~enc_special[flat.clamp(max=weight.shape[0] - 1)]
    keep &= ~special[rows]
    flat, rows = flat[keep], rows[keep]

    total = torch.zeros(student_vocab_size, weight.shape[1], dtype=torch.float32)
    total.index_add_(0, rows, weight[flat])
    counts = torch.zeros(student_vocab_size, dtype=torch.float32)
    counts.index_add_(0, rows, torch.ones_like(rows, dtype=torch.float32))
    empty = counts == 0
    bridge = total / counts.clamp(min=1).unsqueeze(1)
    bridge[empty] = 0.0
    return bridge, empty


def build_bridge(
    student_tokenizer: Any,
    student_vocab_size: int,
    encoder_tokenizer: Any,
    encoder_input_embeddings: Any,
    *,
    encoder_name: str | None = None,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """B ``[student_vocab_size, d_enc]`` fp32 and ``empty`` ``[student_vocab_size]`` bool.

    ``student_vocab_size`` must be the logits width (``model.config.vocab_size``), not
    ``len(tokenizer)``. ``encoder_input_embeddings`` is the encoder's word-embedding matrix
    (``encoder.get_input_embeddings()``, module or tensor). ``encoder_name`` (path or hub name)
    goes into the cache key next to a fingerprint of the embedding matrix itself.
    """
    start = time.perf_counter()
    path = None
    if cache:
        from codistill.paths import cache_dir as default_cache_dir

        root = Path(cache_dir) if cache_dir is not None else default_cache_dir("bridges")
        key = bridge_key(student_tokenizer, student_vocab_size, encoder_tokenizer,
                         encoder_input_embeddings, encoder_name)
        path = root / f"{key[:32]}.pt"
        if path.is_file():
            try:
                blob = torch.load(path, map_location="cpu", weights_only=True)
                bridge, empty = blob["B"].float(), blob["empty"].bool()
                if bridge.shape[0] == student_vocab_size:
                    BRIDGE_STATS["loaded"] += 1
                    BRIDGE_STATS["last_seconds"] = time.perf_counter() - start
                    BRIDGE_STATS["last_path"] = str(path)
                    return bridge, empty
            except Exception:  # a corrupt cache file is rebuilt, never fatal
                pass
    bridge, empty = compute_bridge(student_tokenizer, student_vocab_size, encoder_tokenizer,
                                   encoder_input_embeddings)
    half = bridge.half()
    bridge = half.float()  # same values as a cache hit
    BRIDGE_STATS["computed"] += 1
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            torch.save({"B": half, "empty": empty, "version": BRIDGE_VERSION,
                        "encoder_name": encoder_name or ""}, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        BRIDGE_STATS["last_path"] = str(path)
    BRIDGE_STATS["last_seconds"] = time.perf_counter() - start
    return bridge, empty
