"""SFT example building: layout, prompt masking, code masks by offset mapping, truncation,
split, difficulty order, collation. Uses the real SmolLM2 tokenizer (from its GGUF, cached in
pytest's cache folder after the first load)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from codistill.training.config import DataConfig  # noqa: E402
from codistill.training.data import (  # noqa: E402
    IGNORE_INDEX,
    Collator,
    ExampleStream,
    build_example,
    build_examples,
    clean_field,
    difficulty_bucket,
    epoch_order,
    format_prompt,
    load_records,
    render_target,
    split_train_val,
)

FIXTURE = Path(__file__).parent / "fixtures" / "train_examples.jsonl"


@pytest.fixture(scope="session")
def tok(smollm2_tok):
    return smollm2_tok


@pytest.fixture(scope="session")
def records():
    return load_records(FIXTURE)


RECORD = {
    "id": "t/1", "prompt": "Add two numbers.", "context": "Return the sum.\nNothing else.",
    "code": "\n\ndef add(a, b):\n    return a + b\n\n", "tests": "assert add(1, 2) == 3\n",
    "difficulty": "EASY", "source": "unit",
}


# ---------------------------------------------------------------------- layout
def test_default_layout_and_empty_sections_omitted():
    cfg = DataConfig()
    fields = {"context": "why", "code": "x = 1", "tests": "assert x"}
    text, span = render_target(fields, cfg)
    assert text == "### Reasoning\nwhy\n\n### Code\n```python\nx = 1\n```\n\n### Tests\n```python\nassert x\n```"
    assert text[span[0]:span[1]] == "x = 1"
    text, span = render_target({"context": "", "code": "x = 1", "tests": ""}, cfg)
    assert text == "### Code\n```python\nx = 1\n```" and text[span[0]:span[1]] == "x = 1"


def test_custom_layout_and_validation():
    cfg = DataConfig(target_sections=["{code}", "Explanation: {context}"], section_separator="\n# --\n")
    text, span = render_target({"context": "c", "code": "print(1)", "tests": "t"}, cfg)
    assert text == "print(1)\n# --\nExplanation: c" and span == (0, 8)
    with pytest.raises(ValueError, match="code"):
        DataConfig(target_sections=["{context}", "{tests}"])
    with pytest.raises(ValueError, match="exactly one"):
        DataConfig(target_sections=["{code} {tests}"])


def test_clean_field_keeps_indentation():
    assert clean_field("\n\n    x = 1\n  \n") == "    x = 1"
    assert clean_field(None) == ""


# ---------------------------------------------------------------------- prompt and masks
def test_prompt_masked_target_labelled_and_code_mask_exact(tok):
    cfg = DataConfig()
    ex, reason = build_example(RECORD, tok, cfg)
    assert reason == "" and ex is not None
    n_prompt = ex.labels.index(next(x for x in ex.labels if x != IGNORE_INDEX))
    prompt_text, chat = format_prompt(tok, RECORD["prompt"], cfg)
    assert chat and "<|im_start|>user\nAdd two numbers.<|im_end|>" in prompt_text
    assert tok.decode(ex.input_ids[:n_prompt]) == prompt_text
    assert all(x == IGNORE_INDEX for x in ex.labels[:n_prompt])
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    target_text, _ = render_target({k: clean_field(RECORD[k]) for k in ("context", "code", "tests")}, cfg)
    assert tok.decode(ex.input_ids[n_prompt:]) == target_text + tok.eos_token
    assert ex.input_ids[-1] == tok.eos_token_id and not ex.code_mask[-1]
    # the code mask covers exactly the code tokens: contiguous, decodes to the cleaned code
    idx = [i for i, m in enumerate(ex.code_mask) if m]
    assert idx == list(range(idx[0], idx[-1] + 1)) and idx[0] >= n_prompt
    assert tok.decode([ex.input_ids[i] for i in idx]) == "def add(a, b):\n    return a + b"
    assert len(ex.input_ids) == len(ex.labels) == len(ex.code_mask)


def test_code_mask_on_every_fixture_record(tok, records):
    examples, stats = build_examples(records, tok, DataConfig())
    assert stats.kept == len(records) == 8 and stats.truncated == 0
    for rec, ex in zip(records, examples):
        code = [t for t, m in zip(ex.input_ids, ex.code_mask) if m]
        decoded = tok.decode(code)
        # boundary tokens may carry a fence newline; the code itself is always all there
        assert clean_field(rec["code"]) in decoded and len(decoded) <= len(clean_field(rec["code"])) + 4, rec["id"]
        assert "```" not in decoded and "###" not in decoded


def test_completion_mode_and_chat_without_template(tok):
    cfg = DataConfig(prompt_mode="completion")
    ex, _ = build_example(RECORD, tok, cfg)
    n_prompt = sum(1 for x in ex.labels if x == IGNORE_INDEX)
    assert tok.decode(ex.input_ids[:n_prompt], skip_special_tokens=True) == "Add two numbers.\n"
    plain = transformers.AutoTokenizer.from_pretrained(tok.name_or_path)
    plain.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        build_example(RECORD, plain, DataConfig(prompt_mode="chat"))
    ex2, _ = build_example(RECORD, plain, DataConfig(prompt_mode="auto"))
    assert ex2.input_ids[-len(ex.labels) + n_prompt:] == ex.input_ids[n_prompt:]  # same target
    sys_cfg = DataConfig(system_prompt="You write Python.")
    assert "You write Python." in format_prompt(tok, "x", sys_cfg)[0]


# ---------------------------------------------------------------------- truncation
def _long_record():
    rec = dict(RECORD)
    rec["context"] = "\n".join(f"Step {i}: think about the numbers carefully." for i in range(40))
    rec["tests"] = "\n".join(f"assert add({i}, {i}) == {2 * i}" for i in range(40))
    return rec


def test_truncation_shortens_tests_then_context_never_code(tok):
    rec = _long_record()
    full, _ = build_example(rec, tok, DataConfig(max_length=4096))
    ex, _ = build_example(rec, tok, DataConfig(max_length=len(full.input_ids) - 50))
    assert ex.truncated and len(ex.input_ids) <= len(full.input_ids) - 50
    text = tok.decode(ex.input_ids)
    assert "Step 39" in text  # context untouched while the tests could give the room
    assert "assert add(0, 0)" in text and "assert add(39, 39)" not in text
    # much shorter: tests gone entirely, context cut, code intact
    small = 160
    ex, _ = build_example(rec, tok, DataConfig(max_length=small))
    text = tok.decode(ex.input_ids)
    assert len(ex.input_ids) <= small and "### Tests" not in text and "Step 0" in text and "Step 39" not in text
    assert "def add(a, b):\n    return a + b" in tok.decode([t for t, m in zip(ex.input_ids, ex.code_mask) if m])


def test_too_long_code_is_dropped_and_drop_policy(tok):
    rec = _long_record()
    ex, reason = build_example(rec, tok, DataConfig(max_length=40))
    assert ex is None and reason == "too_long"
    ex, reason = build_example(rec, tok, DataConfig(max_length=160, truncation="drop"))
    assert ex is None and reason == "too_long"
    examples, stats = build_examples([rec, RECORD], tok, DataConfig(max_length=160, truncation="drop"))
    assert stats.dropped_too_long == 1 and stats.kept == 1 and stats.dropped_ids == ["t/1"]


# ---------------------------------------------------------------------- reading
def test_load_records_jsonl_and_datasets_folder(tmp_path, records):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "ds"
    datasets.Dataset.from_list([json.loads(line) for line in FIXTURE.read_text().splitlines()]).save_to_disk(str(folder))
    assert load_records(folder) == records
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "prompt": "p", "code": ""}) + "\n")
    with pytest.raises(ValueError, match="code"):
        load_records(bad)
    with pytest.raises(FileNotFoundError, match="teach stage"):
        load_records(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------------- split, order, stream
def test_split_deterministic_and_stable(tok, records):
    examples, _ = build_examples(records, tok, DataConfig())
    train, val = split_train_val(examples, 0.25, seed=3)
    assert len(val) == 2 and len(train) == 6
    train2, val2 = split_train_val(list(reversed(examples)), 0.25, seed=3)
    assert {e.id for e in val} == {e.id for e in val2}
    _, val3 = split_train_val(examples, 0.25, seed=4)
    assert split_train_val(examples, 0.0, 3) == (examples, [])
    assert len(val3) == 2


def test_difficulty_buckets():
    assert [difficulty_bucket(x) for x in ("EASY", "introductory", "Medium", "interview", "MEDIUM_HARD", "VERY_HARD",
                                            "competition", None, "weird", "800", "2400", "1", "3")] == [
        "easy", "easy", "medium", "medium", "hard", "hard", "hard", "unknown", "unknown", "easy", "hard", "easy", "hard"]
    assert difficulty_bucket("weird", {"WEIRD": "hard"}) == "hard"


def test_easy_first_and_weighted_orders(tok, records):
    examples, _ = build_examples(records, tok, DataConfig())
    rank = {"easy": 0, "medium": 1, "unknown": 1, "hard": 2}
    order = epoch_order(examples, 0, 0, "easy_first")
    ranks = [rank[examples[i].bucket] for i in order]
    assert ranks == sorted(ranks) and sorted(order) == list(range(len(examples)))
    assert order == epoch_order(examples, 0, 0, "easy_first")
    assert epoch_order(examples, 0, 0, "random") != epoch_order(examples, 1, 0, "random")
    big = examples * 50
    drawn = Counter(big[i].bucket for e in range(4) for i in epoch_order(big, e, 0, "weighted"))
    per_example = {b: drawn[b] / sum(1 for x in big if x.bucket == b) for b in drawn}
    assert per_example["easy"] > per_example["medium"] > per_example["hard"]


def test_stream_partitions_the_global_batch(tok, records):
    examples, _ = build_examples(records, tok, DataConfig())
    stream = ExampleStream(examples, seed=0, order="random")
    single = [e.id for mb in stream.micro_batches(1, 4, 1) for e in mb]
    ranks = [[e.id for mb in stream.micro_batches(1, 2, 1, world=2, rank=r) for e in mb] for r in (0, 1)]
    accum = [e.id for mb in stream.micro_batches(1, 2, 2) for e in mb]
    assert single == ranks[0] + ranks[1] == accum
    # crossing an epoch boundary continues with the next epoch's order
    assert [e.id for mb in stream.micro_batches(2, 4, 1) for e in mb][:4]


def test_collator_pads_labels_and_code_mask(tok):
    a, _ = build_example(RECORD, tok, DataConfig())
    rec = dict(RECORD, context="", tests="")
    b, _ = build_example(rec, tok, DataConfig())
    batch = Collator(tok.pad_token_id, pad_to_multiple_of=8)([a, b])
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and width >= len(a.input_ids)
    n = len(b.input_ids)
    assert batch["labels"][1, n:].eq(IGNORE_INDEX).all() and not batch["code_mask"][1, n:].any()
    assert batch["attention_mask"][1, :n].all() and not batch["attention_mask"][1, n:].any()
    assert batch["input_ids"][1, n:].eq(tok.pad_token_id).all()
    assert batch["code_mask"].dtype == torch.bool and batch["code_mask"][0].sum() == sum(a.code_mask)
