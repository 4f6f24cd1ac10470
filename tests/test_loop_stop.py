"""The loop stop (codistill.loops, SamplingParams.stop_on_loop): where it cuts, that a stream left
early gives the same answer as the full one cut there, that the server stops sending, and that keys
made before it existed are unchanged."""

from __future__ import annotations

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codistill.backends import SamplingParams, make_generator
from codistill.loops import CHECK_EVERY, LoopWatch, cut_at_loop, ends_in_a_loop, loop_stop_point

INTRO = "### Reasoning\nWe scan the list once and keep the best pair seen so far, then return it.\n"
LOOPING = INTRO + "### Intent is to be used in a search algorithm and in a data structure.\n" * 60
PLAIN = INTRO + "".join(f"step {i}: compare item {i} with item {i + 1} and keep the larger one\n" for i in range(40))


def test_stop_point_is_the_first_check_position_where_the_text_ends_in_a_loop():
    m = loop_stop_point(LOOPING)
    assert m is not None and m % CHECK_EVERY == 0
    assert ends_in_a_loop(LOOPING[:m]) and not ends_in_a_loop(LOOPING[:m - CHECK_EVERY])
    # the 73-character block must repeat 3 times (219 characters) past the intro before it can fire
    assert len(INTRO) + 3 * 73 <= m < len(INTRO) + 3 * 73 + CHECK_EVERY
    assert cut_at_loop(LOOPING) == LOOPING[:m]
    assert loop_stop_point(PLAIN) is None and cut_at_loop(PLAIN) == PLAIN
    assert loop_stop_point(LOOPING[:m - 1]) is None  # not there yet


@pytest.mark.parametrize("text", [LOOPING, PLAIN, INTRO + "ab" * 500, "x" * 63, ""])
def test_a_watch_fed_in_any_chunks_stops_where_the_full_text_says(text):
    rng = random.Random(0)
    for _ in range(20):
        watch, got, i = LoopWatch(), "", 0
        while i < len(text):
            step = rng.randint(1, 150)
            got, i = text[:i + step], i + step
            if watch.feed(got):
                break
        assert watch.stop_at == loop_stop_point(text)
        if watch.stop_at is not None:
            assert cut_at_loop(got) == text[:watch.stop_at]


def test_sampling_params_dump_and_eval_key_unchanged_unless_on():
    from codistill.evaluation.config import EvalConfig

    assert "stop_on_loop" not in SamplingParams().model_dump()  # teacher cache keys stay valid
    assert SamplingParams(stop_on_loop=True).model_dump()["stop_on_loop"] is True
    off, on = EvalConfig(model="m"), EvalConfig(model="m", stop_on_loop=True)
    assert "stop_on_loop" not in off.key() and on.key()["stop_on_loop"] is True
    assert on.changed_generation_settings(off.model_dump()) == ["stop_on_loop"]
    assert off.changed_generation_settings({k: v for k, v in off.model_dump().items() if k != "stop_on_loop"}) == []


# --------------------------------------------------------------------------- a streaming server


class _Streamer(BaseHTTPRequestHandler):
    """Streams ``server.text`` in 5-character chunks as llama.cpp does (server-sent events, per-chunk
    ``timings``), counting the chunks it managed to send; a client that leaves makes a write fail."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv.bodies.append(body)
        chat = self.path.endswith("/chat/completions")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        pieces = [srv.text[i:i + 5] for i in range(0, len(srv.text), 5)]
        cut = srv.cut_after
        srv.cut_after = None  # only the first attempt is cut short
        try:
            for k, piece in enumerate(pieces):
                if cut is not None and k == cut:
                    return  # the connection ends mid-stream, with no finish_reason
                choice = {"index": 0, "finish_reason": None,
                          **({"delta": {"content": piece}} if chat else {"text": piece})}
                chunk = {"choices": [choice], "timings": {"prompt_n": 9, "cache_n": 2, "predicted_n": k + 1}}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                srv.sent += 1
                time.sleep(0.002)
            end = {"choices": [{"index": 0, "finish_reason": srv.finish, "delta": {}}]}
            self.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            srv.left_early = True


@pytest.fixture
def streamer():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Streamer)
    srv.daemon_threads = True
    srv.text, srv.sent, srv.left_early, srv.cut_after, srv.bodies, srv.finish = LOOPING, 0, False, None, [], "length"
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_a_stream_is_left_as_soon_as_it_loops_and_the_answer_is_the_full_one_cut(streamer, mode):
    gen = make_generator("openai", base_url=streamer.url, model="m", api_key_env=None, prompt_mode=mode)
    out = gen.generate(["p"], SamplingParams(max_new_tokens=4000, stop_on_loop=True))
    assert out == [[cut_at_loop(LOOPING)]]
    assert streamer.bodies[0]["stream"] is True and streamer.bodies[0]["n"] == 1
    total = -(-len(LOOPING) // 5)
    time.sleep(0.2)
    assert streamer.sent < total / 2  # the server was not asked for the rest
    # usage from llama.cpp's per-chunk timings: prompt_n + cache_n, predicted_n of the last chunk read
    assert gen.usage.prompt_tokens == 11 and 0 < gen.usage.completion_tokens < total / 2
    gen.close()


def test_a_stream_without_a_loop_is_read_to_its_end(streamer):
    streamer.text = PLAIN
    gen = make_generator("openai", base_url=streamer.url, model="m", api_key_env=None)
    assert gen.generate(["p"], SamplingParams(max_new_tokens=4000, stop_on_loop=True)) == [[PLAIN]]
    assert streamer.sent == -(-len(PLAIN) // 5) and not streamer.left_early
    gen.close()


def test_a_stream_cut_before_its_end_is_asked_again(streamer):
    streamer.text, streamer.cut_after = PLAIN, 7
    gen = make_generator("openai", base_url=streamer.url, model="m", api_key_env=None, backoff=0.01)
    assert gen.generate(["p"], SamplingParams(max_new_tokens=4000, stop_on_loop=True)) == [[PLAIN]]
    assert len(streamer.bodies) == 2 and gen.usage.retries == 1
    gen.close()


def test_a_stop_string_ends_the_stream_too(streamer):
    streamer.text = PLAIN
    gen = make_generator("openai", base_url=streamer.url, model="m", api_key_env=None)
    out = gen.generate(["p"], SamplingParams(max_new_tokens=4000, stop_on_loop=True, stop=("step 3:",)))
    assert out == [[PLAIN[:PLAIN.index("step 3:")]]]
    time.sleep(0.2)
    assert streamer.sent < len(PLAIN) // 5 / 2
    gen.close()


@pytest.mark.parametrize("server_finish,stop,expected", [
    ("length", (), "length"),  # the cap
    ("stop", (), "eos"),  # no stop string was sent: the server's "stop" is the model's end of sequence
    ("stop", ("step 3:",), "stop"),  # the client saw the stop string and left
    ("length", ("never there",), "length"),
])
def test_a_streamed_answer_says_why_it_ended(streamer, server_finish, stop, expected):
    streamer.text, streamer.finish = PLAIN, server_finish
    gen = make_generator("openai", base_url=streamer.url, model="m", api_key_env=None)
    [[(text, why)]] = gen.generate_detailed(["p"], SamplingParams(max_new_tokens=4000, stop_on_loop=True, stop=stop))
    assert why == expected
    assert text == (PLAIN[:PLAIN.index(stop[0])] if expected == "stop" else PLAIN)
    assert "stop" not in streamer.bodies[0]  # stop strings stay with the client, which knows where it stopped
    gen.close()


def test_a_looping_stream_ends_with_the_loop_reason_and_the_eval_records_it(streamer):
    from codistill.evaluation.strategies.base import Unit
    from codistill.evaluation.strategies.direct import DirectStrategy

    gen = make_generator("openai", base_url=streamer.url, model="m", api_key_env=None)
    [[ans]] = DirectStrategy(gen).answer([Unit(key="k", task_id="t", prompt="p", problem=None)],
                                         SamplingParams(max_new_tokens=4000, stop_on_loop=True))
    assert ans == {"completion_raw": cut_at_loop(LOOPING), "finish_reason": "loop"}
    gen.close()


# --------------------------------------------------------------------------- transformers


@pytest.fixture(scope="module")
def looping_llama(smollm2_tok, tmp_path_factory):
    """A 1-layer random Llama with small weights: greedy, it repeats the prompt's last token."""
    import torch
    import transformers

    tok = smollm2_tok
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                   tie_word_embeddings=True, initializer_range=0.02, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    path = tmp_path_factory.mktemp("looping-llama")
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_hf_loop_stop_gives_the_full_greedy_answer_cut(looping_llama):
    """With the stop, each answer is the answer without it cut by cut_at_loop, and the rows that
    looped stopped generating early."""
    gen = make_generator("hf", model=str(looping_llama), batch_size=4, prompt_mode="completion", num_threads=1)
    prompts = ["def add(a, b):", "x", "# sort a list\n"]
    full = [o[0] for o in gen.generate(prompts, SamplingParams(max_new_tokens=320))]
    before = gen.usage.completion_tokens
    cut = [o[0] for o in gen.generate(prompts, SamplingParams(max_new_tokens=320, stop_on_loop=True))]
    assert all(loop_stop_point(t) is not None for t in full)  # the model loops: the test means something
    assert cut == [cut_at_loop(t) for t in full] and all(len(c) < len(t) for c, t in zip(cut, full))
    assert gen.usage.completion_tokens - before < before  # fewer tokens generated with the stop
    # why each ended: the loop stop; without it, the cap; at a stop string inside the loop, the stop
    assert [why for [(_, why)] in gen.generate_detailed(prompts, SamplingParams(max_new_tokens=320, stop_on_loop=True))] \
        == ["loop"] * 3
    assert [why for [(_, why)] in gen.generate_detailed(prompts, SamplingParams(max_new_tokens=40))] == ["length"] * 3
    stop = full[0][20:26]
    [[(text, why)]] = gen.generate_detailed(prompts[:1], SamplingParams(max_new_tokens=320, stop=(stop,)))
    assert why == "stop" and text == full[0][:full[0].index(stop)]
    gen.close()


def test_why_a_generated_row_ended_is_its_first_event():
    from codistill.backends.hf import _why_ended

    plain = SamplingParams(max_new_tokens=5)
    assert _why_ended("abc", [1, 2, 3], True, plain) == "eos"
    assert _why_ended("abcde", [1, 2, 3, 4, 5], False, plain) == "length"
    assert _why_ended("abc", [1, 2, 3], False, plain) is None  # a stopping criterion this does not know
    assert _why_ended("ab### Tests", [1] * 5, True, SamplingParams(max_new_tokens=5, stop=("### Tests",))) == "stop"
    # a loop before the stop string: the loop stop cut first
    looped = LOOPING + "### Tests"
    assert _why_ended(looped, [1] * 9, False, SamplingParams(max_new_tokens=9, stop=("### Tests",), stop_on_loop=True)) \
        == "loop"
    assert _why_ended(looped, [1] * 9, False, SamplingParams(max_new_tokens=9, stop=("### Tests",))) == "stop"


class _Plain(BaseHTTPRequestHandler):
    """A non-streamed OpenAI answer whose finish_reason is ``server.finish``."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        payload = json.dumps({"choices": [{"index": 0, "message": {"content": "def f():\n    return 1\n"},
                                           "finish_reason": self.server.finish}],
                              "usage": {"prompt_tokens": 3, "completion_tokens": 7}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.mark.parametrize("server_finish,stop,expected", [
    ("stop", ("### Tests",), "stop_or_eos"),  # OpenAI's "stop" covers a stop string and the end of sequence
    ("stop", (), "eos"),  # no stop string sent: only the end of sequence
    ("length", ("### Tests",), "length"),
    ("tool_calls", (), None),  # nothing this tool can use
])
def test_a_non_streamed_answer_says_what_the_server_can_tell(server_finish, stop, expected):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    srv.daemon_threads, srv.finish, srv.bodies = True, server_finish, []
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        gen = make_generator("openai", base_url=f"http://127.0.0.1:{srv.server_address[1]}/v1", model="m",
                             api_key_env=None)
        [[(text, why)]] = gen.generate_detailed(["p"], SamplingParams(max_new_tokens=64, stop=stop))
        assert why == expected and text == "def f():\n    return 1\n"
        assert srv.bodies[0].get("stop") == (list(stop) or None)  # not streamed: the server cuts at the stops
        gen.close()
    finally:
        srv.shutdown()
        srv.server_close()
