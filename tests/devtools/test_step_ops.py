"""The step-operations count (devtools/step_ops.py) counts what a training step issues: thousands of operations for
a 6+6-layer model, autocast's casts among them under bf16 and none in fp32."""

import sys

import pytest

from devtools import step_ops


def test_a_step_issues_thousands_of_operations_and_bf16_adds_its_casts():
    bf16 = step_ops.count(steps=2, precision="bf16")
    fp32 = step_ops.count(steps=2, precision="fp32")
    assert bf16["ops_per_step"] > fp32["ops_per_step"] > 1000
    assert bf16["top"].get("_to_copy", 0) > 200 > fp32["top"].get("_to_copy", 0)
    assert "mm" in fp32["top"] and bf16["ms_per_step"] > 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("steps", [0, -3])
def test_a_step_count_below_one_is_refused_at_once_instead_of_training_for_100_epochs(steps):
    with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
        step_ops.count(steps=steps, precision="fp32")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_the_command_line_names_steps_and_what_it_allows(value, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["step_ops", "--steps", value])
    with pytest.raises(SystemExit) as exited:
        step_ops.main()
    assert exited.value.code == 2
    assert "--steps" in capsys.readouterr().err
