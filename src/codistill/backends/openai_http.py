"""OpenAI-compatible HTTP backend (vLLM, SGLang, llama.cpp server, Ollama, OpenAI).

Standard library only (``urllib`` + a thread pool): no new dependency.

* ``prompt_mode="completion"`` posts to ``{base_url}/completions``, ``"chat"`` (default) to
  ``{base_url}/chat/completions`` with the prompt as one user message. ``base_url`` normally
  ends in ``/v1``; a bare ``http://host:port`` gets ``/v1`` appended.
* The API key is read from the environment variable named by ``api_key_env`` at construction;
  it is sent as a bearer token and never logged or shown in ``repr``.
* Requests run ``concurrency`` at a time. Each is retried with exponential backoff (plus
  jitter, bounded by ``max_retries``) on HTTP 5xx and 429, timeouts, connection errors and 200
  answers whose body is not a JSON object; other 4xx errors fail at once with the server's
  message. A refusal of the prompt's size (llama.cpp without context shift: HTTP 400 "the request
  exceeds the available context size"; vLLM's and OpenAI's "maximum context length") raises
  :class:`ContextTooLongError` at once, whatever the status: retrying the same prompt is useless.
  Every retry is logged (attempt n/N, the error, the wait); giving up raises :class:`HTTPBackendError`
  naming the URL, the attempts and what to check. (A small loop rather than ``urllib3.Retry``/
  tenacity: neither is a dependency, and the loop also retries bad bodies.)
* ``n`` is sent to the server; when it returns fewer choices (llama.cpp server and Ollama ignore
  ``n``), the rest are requested one by one with ``seed + k``.
* Servers accept at most a few stop strings (OpenAI: 4): the first ``max_server_stops`` are sent,
  and every completion is cut at all of them client-side anyway.
* ``usage.prompt_tokens`` / ``usage.completion_tokens`` from the responses are summed in
  :attr:`usage` (with request and retry counts).
* ``stop_on_loop`` (:mod:`codistill.loops`): answers are streamed, one per request, and the client
  leaves a stream as soon as its text ends in a loop (a llama.cpp server then stops generating it);
  the answer is cut where the loop stop cuts it, so it does not depend on how the stream was chunked.
  A streamed request sends no stop strings: the client leaves the stream at the first one itself,
  so the answer is the same and its end is known (:meth:`generate_detailed`).
* Why each answer ended (:data:`codistill.backends.base.FINISH_REASONS`): a streamed answer knows
  (``eos``, ``stop``, ``length``, ``loop``); a non-streamed one gets the server's ``length`` or, where
  stop strings were sent, ``stop_or_eos`` (OpenAI's ``stop`` covers both).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import random
import re
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from codistill.backends.base import Capabilities, ContextSizeError, Generator, SamplingParams, finish_text

__all__ = ["ContextTooLongError", "OpenAIGenerator", "HTTPBackendError"]

log = logging.getLogger(__name__)

_RETRY_STATUS = {408, 409, 425, 429}


class HTTPBackendError(RuntimeError):
    """A request failed for good (non-retryable status, or retries exhausted)."""


class ContextTooLongError(HTTPBackendError, ContextSizeError):
    """The server refused the request because the prompt does not fit its context (never retried)."""


# what servers say when a prompt does not fit: llama.cpp ("the request exceeds the available context
# size", type exceed_context_size_error), vLLM ("This model's maximum context length is N tokens"),
# OpenAI (code context_length_exceeded)
_CONTEXT_SIZE = re.compile(r"exceeds? the (?:available|maximum) context|exceed_context_size|maximum context length"
                           r"|context_length_exceeded", re.I)


def context_size_refusal(status: int, body: str) -> bool:
    """Whether an HTTP error answer is the server refusing the prompt's size."""
    return status >= 400 and bool(_CONTEXT_SIZE.search(body or ""))


class OpenAIGenerator(Generator):
    """Generate through an OpenAI-compatible server.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000/v1``.
        model: model name the server expects.
        api_key_env: name of the environment variable holding the key (unset = no key).
        prompt_mode: "chat" (default) or "completion"; "auto" means chat.
        system_prompt: optional system message in chat mode.
        concurrency: requests in flight at once.
        timeout: seconds per request.
        max_retries: retries per request after the first attempt.
        backoff: first backoff in seconds (doubles each retry, capped by ``max_backoff``).
        max_server_stops: stop strings sent to the server (all are applied client-side).
        extra_body: extra JSON fields for every request (e.g. ``{"top_k": 20}`` for vLLM).
    """

    capabilities = Capabilities(concurrent=True)

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        prompt_mode: Literal["auto", "chat", "completion"] = "chat",
        system_prompt: str | None = None,
        concurrency: int = 4,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 16.0,
        max_server_stops: int = 4,
        extra_body: dict | None = None,
    ):
        super().__init__()
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if prompt_mode not in ("auto", "chat", "completion"):
            raise ValueError(f"prompt_mode must be auto, chat or completion, got {prompt_mode!r}")
        url = base_url.rstrip("/")
        if not url.split("://", 1)[-1].count("/"):
            url += "/v1"
        self.base_url = url
        self.model = model
        self.prompt_mode = "completion" if prompt_mode == "completion" else "chat"
        self.system_prompt = system_prompt
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_server_stops = max_server_stops
        self.extra_body = dict(extra_body or {})
        self.api_key_env = api_key_env
        self.__api_key = os.environ.get(api_key_env) if api_key_env else None
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai-http")

    def __repr__(self) -> str:
        key = f"${self.api_key_env}" if self.__api_key else "none"
        return (f"OpenAIGenerator(base_url={self.base_url!r}, model={self.model!r}, "
                f"mode={self.prompt_mode!r}, concurrency={self.concurrency}, api_key={key})")

    # ------------------------------------------------------------------ requests

    def _endpoint(self) -> str:
        return self.base_url + ("/completions" if self.prompt_mode == "completion"
                                else "/chat/completions")

    def _body(self, prompt: str, params: SamplingParams, n: int, seed: int | None, send_stops: bool = True) -> dict:
        body: dict = {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": n,
        }
        if params.stop and send_stops:
            body["stop"] = list(params.stop[: self.max_server_stops])
        if seed is not None:
            body["seed"] = seed
        if self.prompt_mode == "completion":
            body["prompt"] = prompt
        else:
            messages = [{"role": "user", "content": prompt}]
            if self.system_prompt is not None:
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            body["messages"] = messages
        body.update(self.extra_body)
        return body

    def _post(self, body: dict, read=None) -> dict:
        """POST with retries (each logged: attempt n/N, the error, the wait); returns the decoded
        JSON response (``read(response)``'s answer when given: a stream). A 200 whose body is not a
        JSON object, or a stream cut before its end, is retried like a dropped connection."""
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        url = self._endpoint()
        attempts = self.max_retries + 1
        t0 = time.monotonic()
        for attempt in range(attempts):
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            answered = False  # the server answered (an HTTP status), as opposed to no connection / no reply
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    answered = True
                    payload = _decode(resp.read()) if read is None else read(resp)
                self.usage.add(requests=1, retries=attempt)
                return payload
            except urllib.error.HTTPError as e:
                detail = _excerpt(e)
                if context_size_refusal(e.code, detail):
                    raise ContextTooLongError(f"POST {url} -> HTTP {e.code}: {detail}") from e
                retryable = e.code >= 500 or e.code in _RETRY_STATUS
                if not retryable:
                    raise HTTPBackendError(f"POST {url} -> HTTP {e.code}: {detail}") from e
                err: Exception = e
                what = f"HTTP {e.code}: {detail}"
                answered = True
            except _BadResponse as e:
                err, what = e, str(e)
            except (urllib.error.URLError, TimeoutError, socket.timeout, ConnectionError,
                    http.client.HTTPException) as e:
                err, what = e, _describe_transport_error(e, self.timeout)
            if attempt == self.max_retries:
                self.usage.add(retries=attempt)
                raise HTTPBackendError(self._gave_up(url, attempts, time.monotonic() - t0, what, answered)) from err
            delay = min(self.max_backoff, self.backoff * 2 ** attempt)
            delay *= 1 + 0.25 * random.random()
            log.warning("POST %s: attempt %d/%d failed (%s); waiting %.1f s before attempt %d/%d", url,
                        attempt + 1, attempts, what, delay, attempt + 2, attempts)
            time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _gave_up(self, url: str, attempts: int, seconds: float, what: str, answered: bool) -> str:
        head = (f"POST {url} failed after {attempts} attempts over {seconds:.0f} s; last error {what}. ")
        if answered:
            return head + ("The server answered but kept failing: see its log; retry later, or raise max_retries "
                           "(teach: --retries).")
        return head + (f"Check that an OpenAI-compatible server is running and reachable at {self.base_url} "
                       "(the base_url setting; `codistill serve-teacher` starts the packaged teacher), or "
                       f"raise the timeout ({self.timeout:.0f} s per request; teach: --timeout) or max_retries "
                       "(teach: --retries) for a slow server.")

    def _texts(self, payload: dict) -> list[str]:
        choices = _choices(payload)
        if self.prompt_mode == "completion":
            return [c.get("text") or "" for c in choices]
        return [((c.get("message") if isinstance(c.get("message"), dict) else {}).get("content") or "")
                for c in choices]

    # fields a streamed request adds (a llama.cpp server also reports its token counts in every chunk)
    stream_fields: dict = {"stream": True, "stream_options": {"include_usage": True}}

    def _read_stream(self, resp, params: SamplingParams) -> dict:
        """A streamed answer (server-sent events) read until its end, a stop string or a loop
        (:class:`codistill.loops.LoopWatch`), in the shape of a non-streamed payload. Leaving early
        closes the connection, and a llama.cpp server then frees the slot: the rest is not generated.
        Usage: the server's ``usage`` when it came, else its per-chunk ``timings`` (llama.cpp), else
        one completion token per chunk."""
        from codistill.loops import LoopWatch

        watch, text, chunks, finish, server_finish = LoopWatch(), "", 0, None, None
        usage: dict = {}
        longest_stop = max((len(x) for x in params.stop), default=0)
        for raw in resp:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                finish = finish or "done"
                break
            chunk = _decode(data)
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            elif isinstance(chunk.get("timings"), dict):
                t = chunk["timings"]
                usage = {"prompt_tokens": (t.get("prompt_n") or 0) + (t.get("cache_n") or 0),
                         "completion_tokens": t.get("predicted_n") or 0}
            for c in chunk.get("choices") or []:
                if not isinstance(c, dict):
                    continue
                delta = c.get("delta") if isinstance(c.get("delta"), dict) else {}
                piece = c.get("text") if self.prompt_mode == "completion" else delta.get("content")
                if piece:
                    text += piece
                    chunks += 1
                    if longest_stop and any(x and x in text[-(len(piece) + longest_stop):] for x in params.stop):
                        finish = "stop"  # a stop string: the client stops (none is sent to the server)
                server_finish = c.get("finish_reason") or server_finish
            if finish == "stop":
                break
            if not server_finish and watch.feed(text):
                finish = "loop"
                break
            # a finish_reason from the server: read on to [DONE] (OpenAI sends the usage after it)
        if finish == "done":  # the server ended it: its "stop" is the end of sequence here, "length" the cap
            finish = {"stop": "eos", "length": "length"}.get(server_finish) if server_finish else None
        elif finish is None:
            if not server_finish:
                raise _BadResponse(f"HTTP 200 stream ended before its end ({chunks} chunks, no finish_reason, no [DONE])")
            finish = {"stop": "eos", "length": "length"}.get(server_finish)
        if not usage:
            usage = {"completion_tokens": chunks}
        choice = {"index": 0, "finish_reason": finish}
        choice.update({"text": text} if self.prompt_mode == "completion" else {"message": {"content": text}})
        return {"choices": [choice], "usage": usage}

    def _one_prompt(self, prompt: str, params: SamplingParams) -> list[tuple[str, str | None]]:
        texts: list[str] = []
        finishes: list[str | None] = []
        k = 0
        while len(texts) < params.n:
            seed = None if params.seed is None else params.seed + k
            if params.stop_on_loop:  # streamed, one answer per request, each left as soon as it loops
                want = 1
                payload = self._post({**self._body(prompt, params, 1, seed, send_stops=False), **self.stream_fields},
                                     read=lambda resp: self._read_stream(resp, params))
                why = [c.get("finish_reason") for c in _choices(payload)]
            else:
                want = params.n - len(texts)
                payload = self._post(self._body(prompt, params, want, seed))
                why = [_server_finish(c.get("finish_reason"), bool(params.stop)) for c in _choices(payload)]
            usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
            self.usage.add(prompt_tokens=usage.get("prompt_tokens") or 0,
                           completion_tokens=usage.get("completion_tokens") or 0)
            got = self._texts(payload)
            if not got:
                raise HTTPBackendError(f"server returned no choices: {str(payload)[:300]}")
            texts.extend(got[:want])
            finishes.extend(why[:want])
            k += 1
        return [(finish_text(t, params), f) for t, f in zip(texts, finishes)]

    def generate_detailed(self, prompts: list[str], params: SamplingParams | None = None):
        params = params or SamplingParams()
        if self._pool is None:
            raise RuntimeError("generator is closed")
        futures = [self._pool.submit(self._one_prompt, p, params) for p in prompts]
        return [f.result() for f in futures]

    def generate(self, prompts: list[str], params: SamplingParams | None = None) -> list[list[str]]:
        return [[text for text, _ in outs] for outs in self.generate_detailed(prompts, params)]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _choices(payload: dict) -> list[dict]:
    choices = payload.get("choices") or []
    if not isinstance(choices, list):
        return []
    return sorted((c for c in choices if isinstance(c, dict)), key=lambda c: c.get("index") or 0)


def _server_finish(reason, stops_sent: bool) -> str | None:
    """A non-streamed answer's end, from OpenAI's ``finish_reason``: ``stop`` is a stop string or
    the end of sequence, which the protocol does not tell apart when stop strings were sent."""
    if reason == "stop":
        return "stop_or_eos" if stops_sent else "eos"
    return reason if reason in ("length",) else None


class _BadResponse(Exception):
    """A 200 answer whose body is not a JSON object (a proxy or a server cut short)."""


def _decode(raw: bytes) -> dict:
    try:
        payload = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _BadResponse(f"HTTP 200 with a body that is not JSON ({type(e).__name__}: "
                           f"{raw[:120]!r}{'...' if len(raw) > 120 else ''})") from e
    if not isinstance(payload, dict):
        raise _BadResponse(f"HTTP 200 with JSON that is not an object ({str(payload)[:120]})")
    return payload


def _describe_transport_error(e: BaseException, timeout: float) -> str:
    if isinstance(e, (TimeoutError, socket.timeout)) or isinstance(getattr(e, "reason", None), TimeoutError):
        return f"no answer within the {timeout:g} s timeout"
    reason = getattr(e, "reason", None)
    return f"{type(e).__name__}: {reason if reason is not None else e}"


def _excerpt(e: urllib.error.HTTPError, limit: int = 300) -> str:
    try:
        body = e.read().decode(errors="replace")
    except Exception:  # noqa: BLE001 - the body is only for the message
        body = ""
    return (body or e.reason or "")[:limit]
