"""The step-operations count (devtools/step_ops.py) counts what a training step issues: thousands of operations for
a 6+6-layer model, autocast's casts among them under bf16 and none in fp32."""

from devtools import step_ops


def test_a_step_issues_thousands_of_operations_and_bf16_adds_its_casts():
    bf16 = step_ops.count(steps=2, precision="bf16")
    fp32 = step_ops.count(steps=2, precision="fp32")
    assert bf16["ops_per_step"] > fp32["ops_per_step"] > 1000
    assert bf16["top"].get("_to_copy", 0) > 200 > fp32["top"].get("_to_copy", 0)
    assert "mm" in fp32["top"] and bf16["ms_per_step"] > 0
