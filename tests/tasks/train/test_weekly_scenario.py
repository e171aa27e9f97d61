"""Weeks of retraining, read where the train step reads them: what each week's model really trains on.

Four weeks run through the real steps (pull, validate, split, mark_consumed, train) with replay, a general-domain
test set that arrives in week 3, and init_from champion. The training and validation texts are taken where the
train step tokenizes them, so a pair lost, duplicated or leaked anywhere on the way shows up here.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from support.corpora import digit_pairs, write_jsonl
from support.runs import make_run
from tasks import layout
from tasks.data import consumed, pull, split, textnorm, validate
from tasks.io import storage
from tasks.train import batching
from tasks.train import loop as trainloop
from tasks.train import step as train

WEEKS = [digit_pairs(160, seed=10 + week) for week in range(4)]
GENERAL = digit_pairs(400, seed=77, min_len=8, max_len=9)  # replay corpus: longer readings than the domain's


def _pairs(path) -> list[tuple[str, str]]:
    return [(r["translation"]["en"], r["translation"]["de"])
            for r in map(json.loads, storage.read_text(path).splitlines())]


class Capture:
    """What fine_tune hands the loop: the texts tokenized for training and validation, and the starting weights."""

    def __init__(self, monkeypatch):
        self.encoded: list[tuple[list[str], list[str]]] = []
        self.runs: list[dict] = []
        real_encode, real_train = batching.encode, trainloop.train

        def encode(tokenizer, sources, targets, *args, **kwargs):
            self.encoded.append((list(sources), list(targets)))
            return real_encode(tokenizer, sources, targets, *args, **kwargs)

        def loop_train(model, train_data, val_data, settings, **kwargs):
            self.runs.append({"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
                              "train": train_data, "validation": val_data})
            return real_train(model, train_data, val_data, settings, **kwargs)

        monkeypatch.setattr(batching, "encode", encode)
        monkeypatch.setattr(trainloop, "train", loop_train)

    def week(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        (train_src, train_tgt), (val_src, val_tgt) = self.encoded[-2:]
        return list(zip(train_src, train_tgt)), list(zip(val_src, val_tgt))


def _week(root: Path, incoming: Path, run_id: str, tiny_model, champion: Path | None = None, **params):
    cfg = make_run(root, run_id=run_id, data_uri=str(incoming), base_model=str(tiny_model), min_clean_pairs=20,
                   min_test_pairs=5, max_steps=3, num_train_epochs=1, learning_rate=3e-3, max_tokens_per_batch=512,
                   eval_every_steps=3, checkpoint_every_steps=1000, **params)
    pull.run(cfg)
    validate.run(cfg)
    split.run(cfg)
    if params.get("init_from") == "champion":
        record = {"found": False, "reason": "nothing published yet"}
        if champion is not None:
            shutil.copytree(champion, cfg.uri(layout.CHAMPION))
            record = {"found": True, "label": f"org/digits@{champion.parent.name}",
                      "model_uri": cfg.uri(layout.CHAMPION)}
        storage.write_json(cfg.uri(layout.CHAMPION_RECORD), record)
    report = train.run(cfg)
    consumed.commit(cfg)
    return cfg, report


@pytest.fixture
def weeks(tmp_path, tiny_model, monkeypatch):
    capture = Capture(monkeypatch)
    incoming, root = tmp_path / "incoming", tmp_path / "runs"
    write_jsonl(tmp_path / "general.jsonl", GENERAL)
    general_test = GENERAL[:30] + [WEEKS[0][-1], WEEKS[3][-1]]  # one carried pair and one new pair of week 4
    write_jsonl(tmp_path / "general_test.jsonl", general_test)
    done, champion = [], None
    for week, pairs in enumerate(WEEKS, start=1):
        repeat = [WEEKS[0][week]] if week > 1 else []  # a pair an earlier week had, sent again
        write_jsonl(incoming / f"week{week}.jsonl", pairs + repeat)
        extra = {"general_eval_uri": str(tmp_path / "general_test.jsonl")} if week >= 3 else {}
        cfg, report = _week(root, incoming, f"week-{week}", tiny_model, champion, init_from="champion",
                            replay_data_uri=str(tmp_path / "general.jsonl"), replay_fraction=0.2, **extra)
        done.append((cfg, report, *capture.week(), capture.runs[-1]))
        champion = Path(cfg.uri(layout.MODEL))
    return done, general_test, capture


def test_each_week_trains_on_every_kept_pair_so_far_once_and_never_on_held_out_ones(weeks):
    done, general_test, _ = weeks
    first = done[0][0]
    frozen = {textnorm.source_key(s) for s, _ in _pairs(first.state_uri(layout.TEST_SET))}
    general = {textnorm.source_key(s) for s, _ in general_test}
    general_corpus = set(GENERAL)
    for week, (cfg, report, trained, validated, _) in enumerate(done, start=1):
        held_out = frozen | (general if week >= 3 else set())
        domain = [p for p in trained if p not in general_corpus]
        replayed = [p for p in trained if p in general_corpus]
        so_far = {p for pairs in WEEKS[:week] for p in pairs}
        validation_keys = {textnorm.source_key(s) for s, _ in validated}
        expected = {p for p in so_far if textnorm.source_key(p[0]) not in held_out | validation_keys}
        assert Counter(domain) == Counter(expected), f"week {week}"  # every one, each once
        assert not {textnorm.source_key(s) for s, _ in trained} & (held_out | validation_keys)
        # Validation: the kept pairs whose hash falls in its range, none of them trained on, none held out.
        assert validated and not {textnorm.source_key(s) for s, _ in validated} & held_out
        assert set(validated) == {p for p in so_far if split.assign(p[0], cfg.test_fraction, cfg.validation_fraction,
                                                                    True) == "validation"
                                  and textnorm.source_key(p[0]) not in held_out}
        # Replay: round(N × f / (1 − f)) general pairs for N domain pairs, none of them held out.
        assert len(replayed) == round(len(domain) * 0.2 / 0.8) == report["replay"]["general_pairs"]
        assert report["train_pairs"] == len(trained) and report["validation_pairs"] == len(validated)
        assert report["domain_train_pairs"] == len(domain)
    _assert_each_week_started_from_the_last(done)


def _assert_each_week_started_from_the_last(done) -> None:
    """init_from champion: each week's loop starts from the weights of the week before (week 1 from the base)."""
    from safetensors.torch import load_file

    assert done[0][1]["init_from"].startswith("base")
    for week in range(1, len(done)):
        champion = load_file(str(Path(done[week - 1][0].uri(layout.MODEL)) / "model.safetensors"))
        start = done[week][4]["state"]
        assert done[week][1]["init_from"].startswith("champion")
        for name, tensor in champion.items():
            assert start[name].equal(tensor), (week, name)


def test_new_only_trains_on_the_new_objects_alone_and_the_next_full_week_on_everything(tmp_path, tiny_model,
                                                                                       monkeypatch):
    capture = Capture(monkeypatch)
    incoming, root = tmp_path / "incoming", tmp_path / "runs"
    trained = []
    for week, mode in enumerate(("all", "new_only", "all"), start=1):
        write_jsonl(incoming / f"week{week}.jsonl", WEEKS[week - 1])
        cfg, report = _week(root, incoming, f"week-{week}", tiny_model, training_data=mode)
        trained.append((cfg, report, *capture.week()))
    frozen = {textnorm.source_key(s) for s, _ in _pairs(trained[0][0].state_uri(layout.TEST_SET))}
    for week, (cfg, report, pairs, validated) in enumerate(trained, start=1):
        data = WEEKS[1] if week == 2 else [p for w in WEEKS[:week] for p in w]
        held_out = frozen | {textnorm.source_key(s) for s, _ in validated}
        assert Counter(pairs) == Counter({p for p in data if textnorm.source_key(p[0]) not in held_out}), week
        assert report["train_pairs"] == len(pairs) and report["replay"] is None
        assert [o["how"] for o in report["training_objects"]] == (["new"] if week < 3 else ["new", "carried",
                                                                                             "carried"])
