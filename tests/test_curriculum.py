"""α/β curriculum: schedule values, floors, α + β = 1, and the default's average β."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from codistill.training.curriculum import CurriculumConfig, StructureLossConfig, average_beta, loss_weights

STEPS = 101  # progress = step / 100: steps 0, 50, 100 are start, middle, end


def cfg(schedule, **kw):
    kw.setdefault("beta_start", 0.1)
    kw.setdefault("beta_end", 0.3)
    kw.setdefault("beta_min", 0.0)
    kw.setdefault("alpha_min", 0.0)
    return CurriculumConfig(schedule=schedule, **kw)


@pytest.mark.parametrize(
    "schedule,start,middle,end",
    [
        ("constant", 0.2, 0.2, 0.2),
        ("linear", 0.1, 0.2, 0.3),
        ("cosine", 0.1, 0.2, 0.3),
        ("step", 0.1, 0.3, 0.3),  # step_at=0.5: the middle step is already past the jump
    ],
)
def test_schedule_start_middle_end(schedule, start, middle, end):
    c = cfg(schedule)
    got = [loss_weights(s, STEPS, c)[1] for s in (0, 50, 100)]
    assert got == pytest.approx([start, middle, end])


def test_cosine_is_slow_at_the_ends_and_step_jumps_where_told():
    c = cfg("cosine")
    quarter = loss_weights(25, STEPS, c)[1]
    assert quarter == pytest.approx(0.1 + 0.2 * (1 - 0.7071067811865476) / 2)
    assert quarter < loss_weights(25, STEPS, cfg("linear"))[1]
    s = cfg("step", step_at=0.25)
    assert loss_weights(24, STEPS, s)[1] == pytest.approx(0.1)
    assert loss_weights(25, STEPS, s)[1] == pytest.approx(0.3)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "step"])
def test_alpha_plus_beta_is_one_and_floors_hold(schedule):
    c = cfg(schedule, beta_start=0.0, beta_end=0.9, beta_min=0.05, alpha_min=0.3)
    for step in range(STEPS):
        alpha, beta = loss_weights(step, STEPS, c)
        assert alpha + beta == pytest.approx(1.0)
        assert beta >= 0.05 - 1e-12 and alpha >= 0.3 - 1e-12
    if schedule != "constant":
        assert loss_weights(0, STEPS, c)[1] == pytest.approx(0.05)  # β floor binds at the start
        assert loss_weights(100, STEPS, c)[1] == pytest.approx(0.7)  # α floor caps β at the end
    else:
        assert loss_weights(100, STEPS, c)[1] == pytest.approx(0.45)  # (0 + 0.9) / 2


def test_steps_outside_the_run_are_clamped():
    c = cfg("linear")
    assert loss_weights(-5, STEPS, c) == loss_weights(0, STEPS, c)
    assert loss_weights(500, STEPS, c) == loss_weights(100, STEPS, c)
    assert loss_weights(0, 1, c)[1] == pytest.approx(0.3)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "step"])
def test_default_average_beta_is_about_14_percent(schedule):
    c = CurriculumConfig(schedule=schedule)
    for steps in (100, 1000, 3000):
        assert average_beta(c, steps) == pytest.approx(0.14, abs=0.02)
    assert average_beta(CurriculumConfig(schedule=schedule), 1000) == pytest.approx(0.14, abs=1e-9)


def test_default_is_linear_ramp():
    c = CurriculumConfig()
    assert c.schedule == "linear"
    assert loss_weights(0, 1000, c) == pytest.approx((0.96, 0.04))
    assert loss_weights(999, 1000, c) == pytest.approx((0.76, 0.24))


def test_invalid_configs_are_rejected_with_a_reason():
    with pytest.raises(ValidationError, match="alpha_min"):
        CurriculumConfig(alpha_min=0.7, beta_min=0.5)
    with pytest.raises(ValidationError):
        CurriculumConfig(schedule="exponential")
    with pytest.raises(ValidationError):
        CurriculumConfig(beta_end=1.5)
    with pytest.raises(ValidationError):
        StructureLossConfig(mode="bogus")


def test_configs_have_help_text_and_round_trip():
    for model in (CurriculumConfig, StructureLossConfig):
        assert all(f.description for f in model.model_fields.values())
    c = StructureLossConfig(encoder="self", self_layers=4, curriculum={"schedule": "cosine"})
    assert StructureLossConfig.model_validate(c.model_dump()) == c


def test_curriculum_does_not_import_torch():
    import subprocess

    code = "import sys, codistill.training, codistill.training.curriculum; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
