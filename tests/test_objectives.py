"""The objective interface: a toy objective registered in the registry is what the loop trains,
and its state survives a checkpoint. Runs on the tiny random Llama of conftest (seconds)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("accelerate")

from codistill.training import objectives  # noqa: E402
from codistill.training.config import TrainConfig  # noqa: E402
from codistill.training.objectives.base import Objective  # noqa: E402
from codistill.training.trainer import train  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "train_examples.jsonl"
W0, C, LR = 2.0, 0.5, 0.01
EXPORT_FILE = "toy_w.json"


class ToyObjective(Objective):
    """``loss = C·w`` with ``w`` a scalar parameter of the objective's own (the model is not
    used). Micro-batches take shares by their example counts, so a step's loss is ``C·w`` for
    any accumulation. The gradient is the constant ``C``, so each Adam step (no weight decay,
    constant lr) moves ``w`` by ``lr·C/(|C| + eps)``: ``w_k = W0 − k·lr`` to float precision."""

    progress_fields = {"w": "w"}

    def setup(self, model, tokenizer, device, total_steps):
        super().setup(model, tokenizer, device, total_steps)
        self.w = torch.nn.Parameter(torch.tensor(W0, device=device))

    def loss(self, model, batch, step, totals):
        share = self.counts(batch)["examples"] / totals["examples"]
        return C * self.w * share, {"w_share": float(self.w.detach()) * share}

    def summarize(self, sums, totals):
        return {"w": sums["w_share"]}

    def weights(self, step):
        return {"toy_step": step}

    def extra_parameters(self):
        return [self.w]

    def state_dict(self):
        return {"w": self.w.detach().clone()}

    def load_state_dict(self, state):
        with torch.no_grad():
            self.w.copy_(state["w"])

    def export(self, output_dir):
        (Path(output_dir) / EXPORT_FILE).write_text(json.dumps({"w": float(self.w.detach())}))


@pytest.fixture
def toy_registered(monkeypatch, tmp_path):
    monkeypatch.setenv("CODISTILL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setitem(objectives.OBJECTIVES, "toy", (__name__, "ToyObjective"))
    monkeypatch.setattr(objectives, "objective_name", lambda config: "toy")


def toy_config(model_dir: Path, out: Path, **overrides) -> TrainConfig:
    return TrainConfig.model_validate({
        "model": str(model_dir), "output_dir": str(out),
        "data": {"train_file": str(FIXTURE), "max_length": 256, "order": "random", "val_fraction": 0.25},
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0},
        "optim": {"lr": LR, "warmup_steps": 0, "schedule": "constant"},
        "structure": {"enabled": False},
        "logging": {"tensorboard": False, "progress": False},
        "batch_size": 1, "grad_accum": 2, "max_steps": 4, "dtype": "float32", "num_threads": 1, "seed": 0,
        **overrides,
    })


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines() if line]


def expected_w(k: int) -> float:
    return W0 - k * LR * C / (abs(C) + 1e-8)


def test_registered_objective_is_what_the_loop_trains(toy_registered, tiny_llama_dir, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger="codistill.training.trainer"):
        summary = train(toy_config(tiny_llama_dir, out))
    rows = read_log(out)
    steps = [r for r in rows if r.get("split", "train") == "train"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for k, r in enumerate(steps):
        assert r["w"] == pytest.approx(expected_w(k), abs=1e-6)
        assert r["loss"] == pytest.approx(C * expected_w(k), abs=1e-6)
        assert r["toy_step"] == k and r["examples"] == 2 and r["target_tokens"] > 0 and r["tokens"] > r["target_tokens"]
    val = [r for r in rows if r.get("split") == "val"]
    assert len(val) == 1 and val[0]["examples"] == 2 and val[0]["toy_step"] == 3
    assert val[0]["loss"] == pytest.approx(C * expected_w(4), abs=1e-6)  # after the last step
    assert json.loads((out / EXPORT_FILE).read_text())["w"] == pytest.approx(expected_w(4), abs=1e-6)
    assert summary["adapter_dir"] and (out / "adapter" / "codistill_format.json").is_file()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: 4/4")]
    assert lines and f"loss {C * expected_w(3):.4f} w {expected_w(3):.3f} lr {LR:.2e}" in lines[-1]


def test_resume_restores_objective_state(toy_registered, tiny_llama_dir, tmp_path):
    out = tmp_path / "run"
    first = train(toy_config(tiny_llama_dir, out, save_every=2, stop_at_step=2))
    assert first["stopped_early"] and first["steps"] == 2
    ckpt = out / "checkpoints" / "step-00000002"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["toy_step"] == 1 and state["lr"] == LR
    assert torch.load(ckpt / "custom_checkpoint_2.pkl")["w"] == pytest.approx(expected_w(2), abs=1e-6)
    assert json.loads((ckpt / "codistill_format.json").read_text())["format"]["name"] == "custom"

    second = train(toy_config(tiny_llama_dir, out, save_every=2, resume=True))
    assert second["resumed_from"] == str(ckpt) and second["steps"] == 4
    # a fresh w (W0) at step 3 would log C·W0; the restored one continues the closed form
    steps = [r for r in read_log(out) if r.get("split", "train") == "train"]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for k, r in enumerate(steps):
        assert r["loss"] == pytest.approx(C * expected_w(k), abs=1e-6), r["step"]


def test_registry_names_the_existing_objectives():
    """The choice comes from fields that exist already (no recipe changes)."""
    assert objectives.objective_name(TrainConfig()) == "structure"
    assert objectives.objective_name(TrainConfig(structure={"enabled": False, "mode": "hidden"})) == "structure"
    assert objectives.objective_name(TrainConfig(structure={"mode": "hidden"})) == "hidden"
    for name in objectives.OBJECTIVES:
        module, cls = objectives.OBJECTIVES[name]
        assert issubclass(getattr(__import__(module, fromlist=[cls]), cls), Objective)
