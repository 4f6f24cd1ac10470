"""Teacher modes come from the registry (codistill.teacher.modes): a toy mode registered there is
accepted by TeachConfig and the command line, and the teach loop calls its hooks (rows, template,
resources, parsing, checks, code, stopping rule, record fields), against the canned teacher server
of test_teacher."""

from __future__ import annotations

import pytest

from test_teacher import _cfg, _dataset, _problem, server  # noqa: F401  (the canned teacher fixture)
from codistill.store import read_jsonl
from codistill.teacher.modes import (
    MODE_REGISTRY,
    Mode,
    ModeSpec,
    aliases,
    get_mode,
    register,
    reject_attempt,
    unregister,
)
from codistill.teacher.parse import parse_answer
from codistill.teacher.teach import TeachConfig, teach
from codistill.teacher.templates import MODES, load_template, render_context


class GistMode(Mode):
    """Keeps the intent as a "gist"; wants two valid answers per problem; trains on a fixed line."""

    spec = ModeSpec(name="gist", needs_solution=False, sections=("gist", "steps"),
                    titles={"gist": "Gist", "steps": "How"}, required=("gist",),
                    aliases=aliases({"gist": ["intent"], "steps": ["steps"]}))

    def __init__(self):
        self.opened = 0
        self.closed = 0

    def template(self):
        return "Problem:\n{problem}\nGive the gist.\n", "toy:gist"

    def select_rows(self, rows):
        return [r for r in rows if not r["id"].startswith("skip")]

    def open(self, run):
        self.opened += 1
        run.state["words"] = 3
        run.resources.callback(self._close)

    def _close(self):
        self.closed += 1

    def check(self, run, row, text, parsed, entry):
        entry["gist_words"] = len(parsed.sections.get("gist", "").split())
        if parsed.valid and entry["gist_words"] < run.state["words"]:
            reject_attempt(parsed, entry, "gist too short")
        return {"score": 0.0, "toy": True} if parsed.valid else None

    def code(self, row, parsed):
        return f"# gist of {row['id']}\n"

    def enough(self, passing, cfg):
        return len(passing) >= 2

    def finish(self, record, passing):
        record["gist_passing"] = len(passing)


@pytest.fixture()
def gist():
    mode = register(GistMode())
    yield mode
    unregister("gist")
    assert "gist" not in MODE_REGISTRY


def test_registry_lists_the_builtin_modes():
    assert list(MODE_REGISTRY)[:4] == ["explain", "solve", "hierarchical", "correction"] and list(MODES) == list(MODE_REGISTRY)
    assert MODES["explain"] is get_mode("explain").spec
    with pytest.raises(KeyError, match="unknown teacher mode 'nope'"):
        get_mode("nope")
    with pytest.raises(ValueError, match="already registered"):
        register(type(get_mode("explain"))())
    with pytest.raises(ValueError, match="unknown teacher mode 'gist'; choose one of explain, solve, hierarchical"):
        TeachConfig.model_validate({"out_dir": "o", "dataset": "d", "mode": "gist"})


def test_a_registered_mode_is_used_by_the_teach_loop(tmp_path, server, gist):  # noqa: F811
    from codistill.cli import parse_config

    assert "gist" in MODES and MODES["gist"] is GistMode.spec
    assert parse_config("teach", ["--mode", "gist", "--out", "o", "--dataset", "d"]).mode == "gist"
    t = load_template("gist")
    assert t.source == "toy:gist" and t.render("[[good]] x") == "Problem:\n[[good]] x\nGive the gist.\n"
    assert parse_answer("gist", "## Intent\nAll of it.").sections == {"gist": "All of it."}

    ds = _dataset(tmp_path / "data", [_problem("good"), _problem("good2"), _problem("skip1")])
    cfg = _cfg(tmp_path, server.url, ds, mode="gist")
    m = teach(cfg)
    assert gist.opened == 1 and gist.closed == 1  # resources closed when the run ends
    assert m["complete"] and m["counts"]["rows"] == 2 and m["counts"]["valid"] == 2
    assert m["template"] == {"source": "toy:gist", "sha256": t.sha256}
    assert len(server.requests) == 4 and {r["pid"] for r in server.requests} == {"good", "good2"}

    recs = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "contexts.jsonl")}
    assert set(recs) == {"good", "good2"}
    r = recs["good"]
    assert r["mode"] == "gist" and r["valid"] and r["attempts"] == 2 and r["gist_passing"] == 2
    assert [a["gist_words"] > 3 for a in r["attempt_log"]] == [True, True]
    assert r["leakage_detail"] == {"score": 0.0, "toy": True} and r["leakage"] == 0.0
    assert r["code"] == "# gist of good\n" and r["context"] == render_context(r["sections"], "gist")
    assert r["context"].startswith("### Gist\nReturn, for every position")
    assert r["params"]["stop"] == []

    train = {x["id"]: x for x in read_jsonl(tmp_path / "run" / "train.jsonl")}
    assert train["good2"]["code"] == "# gist of good2\n" and train["good2"]["context"].startswith("### Gist\n")

    # resumed: nothing to ask, so the mode's resources are not opened again
    m2 = teach(cfg)
    assert m2["this_run"]["teacher_calls"] == 0 and m2["this_run"]["new_contexts"] == 0
    assert gist.opened == 1 and len(server.requests) == 4


def test_a_mode_rejection_is_retried(tmp_path, server, gist):  # noqa: F811
    ds = _dataset(tmp_path / "data", [_problem("good")])
    m = teach(_cfg(tmp_path, server.url, ds, mode="gist", max_attempts=3))
    rec = next(read_jsonl(tmp_path / "run" / "contexts.jsonl"))
    assert rec["valid"] and m["counts"]["valid"] == 1
    # the stricter mode rejects every answer: the record says why, with the mode's log fields
    unregister("gist")
    strict = GistMode()
    strict.open = lambda run: run.state.update(words=10 ** 6)
    register(strict)
    m = teach(_cfg(tmp_path, server.url, ds, mode="gist", max_attempts=3, out_dir=str(tmp_path / "run2")))
    rec = next(read_jsonl(tmp_path / "run2" / "contexts.jsonl"))
    assert not rec["valid"] and rec["reason"] == "gist too short" and rec["attempts"] == 3
    assert [a["reason"] for a in rec["attempt_log"]] == ["gist too short"] * 3
    assert m["counts"]["invalid_by_reason"] == {"gist too short": 1}
