"""The teacher as the teach stage calls it: one :class:`TeacherClient` per teach run, closed when
the run ends, that returns each call's answer with that call's exact token usage.

The client holds one generator (:func:`codistill.backends.make_generator`) per request in flight
(``concurrency`` for an OpenAI-compatible server, one for in-process llama.cpp), built on the
first call: a generator sums usage over its life, so a call that has a generator to itself reads
its own tokens, retries and requests as the difference before/after. (One shared generator would
mix the counts of concurrent calls, and those counts are written to ``contexts.jsonl`` and the
cache.)
"""

from __future__ import annotations

import queue
import threading
import time

__all__ = ["EmptyAnswerError", "TeacherClient"]


class EmptyAnswerError(RuntimeError):
    """The teacher answered (HTTP 200) with no text: a symptom of a server in trouble. Such an
    answer is never cached, and the row is left to do (a teacher error), so the next run asks again."""


class TeacherClient:
    """``client(prompt, params) -> (text, usage)``; ``calls`` counts them, :meth:`usage` sums the
    run's usage over every generator; :meth:`close` (or ``with``) releases the generators."""

    def __init__(self, cfg):
        self.cfg = cfg  # TeacherConfig
        self._pool: queue.Queue | None = None
        self._all: list = []
        self._lock = threading.Lock()
        self.calls = 0

    def _gens(self) -> queue.Queue:
        with self._lock:
            if self._pool is None:
                from codistill.backends import make_generator

                c = self.cfg
                q: queue.Queue = queue.Queue()
                if c.backend == "openai":
                    for _ in range(c.concurrency):
                        g = make_generator("openai", base_url=c.base_url, model=c.model, api_key_env=c.api_key_env,
                                           concurrency=1, timeout=c.timeout_s, max_retries=c.max_retries,
                                           extra_body=c.extra_body)
                        q.put(g)
                        self._all.append(g)
                else:
                    g = make_generator("llamacpp", model=c.model, n_ctx=c.n_ctx)
                    q.put(g)
                    self._all.append(g)
                self._pool = q
            return self._pool

    def __call__(self, prompt: str, params) -> tuple[str, dict]:
        pool = self._gens()
        g = pool.get()
        try:
            before = g.usage.as_dict()
            t0 = time.perf_counter()
            text = g.generate([prompt], params)[0][0]
            secs = time.perf_counter() - t0
            after = g.usage.as_dict()
        finally:
            pool.put(g)
        with self._lock:
            self.calls += 1
        usage = {k: after[k] - before[k] for k in after}
        return text, {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
                      "requests": usage["requests"], "retries": usage["retries"], "seconds": round(secs, 3)}

    def usage(self) -> dict[str, int]:
        """Prompt/completion tokens, requests and retries of every call so far."""
        total = {"prompt_tokens": 0, "completion_tokens": 0, "requests": 0, "retries": 0}
        for g in self._all:
            for k, v in g.usage.as_dict().items():
                total[k] += v
        return total

    def close(self) -> None:
        for g in self._all:
            g.close()

    def __enter__(self) -> TeacherClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
