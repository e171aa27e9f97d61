"""The warmup study (devtools/warmup_study.py) trains what it says: each run with its own rate and warmup (the
automatic one following the rate), on the same data, read against the same source-blind loss as the bench."""

import math

from devtools import warmup_study
from tasks.train import automatic

TINY = {"vocab_size": 300, "d_model": 32, "layers": 2, "heads": 2, "ffn_dim": 64}


def test_each_run_trains_with_its_own_rate_and_warmup():
    found = warmup_study.study(TINY, "1e-3:auto,1e-3:0.05,1e-3:3", pairs=120, tokens=256, epochs=2)
    runs = found["runs"]
    scheduled = runs["1e-3:auto"]["scheduled_steps"]
    assert scheduled > 8 and all(run["scheduled_steps"] == scheduled for run in runs.values())
    assert runs["1e-3:auto"]["warmup_steps"] == int(automatic.auto_warmup(1e-3) * scheduled) > 0
    assert runs["1e-3:0.05"]["warmup_steps"] == int(0.05 * scheduled)
    assert runs["1e-3:3"]["warmup_steps"] == 3
    for run in runs.values():  # a validation every quarter epoch, the best among them
        assert len(run["validations"]) >= 8 and run["best"] == min(loss for _, loss in run["validations"])
    assert 0 < found["unigram_loss"] < math.log(TINY["vocab_size"])  # a source-blind model beats a uniform one


def test_seeds_repeat_each_run_from_other_weights_and_orders():
    found = warmup_study.study(TINY, "1e-3:auto", pairs=120, tokens=256, epochs=1, seeds="0,1")
    runs = found["runs"]
    assert sorted(runs) == ["1e-3:auto", "1e-3:auto/s1"]  # seed 0 keeps the table's key
    again = warmup_study.study(TINY, "1e-3:auto", pairs=120, tokens=256, epochs=1)["runs"]["1e-3:auto"]
    assert again["validations"] == runs["1e-3:auto"]["validations"]  # seed 0 is the default run, repeatable
    assert runs["1e-3:auto/s1"]["validations"] != runs["1e-3:auto"]["validations"]
    assert runs["1e-3:auto/s1"]["scheduled_steps"] == runs["1e-3:auto"]["scheduled_steps"]
