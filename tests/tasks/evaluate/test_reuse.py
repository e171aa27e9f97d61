"""Kept translations (tasks/evaluate/reuse.py): next week's evaluate does not decode the base model and the champion
again when the same weights read the same frozen sentences with the same settings and engine, and anything that
would change their translations decodes afresh."""

import json
import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from support.corpora import digit_pairs
from support.runs import make_run, ready_to_evaluate
from tasks import cost, hardware, layout
from tasks.evaluate import decoding, engines, gate, reuse
from tasks.evaluate import step as evaluate
from tasks.io import storage

TEST = digit_pairs(60, seed=31, min_len=3, max_len=9)
GENERAL = digit_pairs(30, seed=32)
SETTINGS = {"num_beams": 2, "max_source_length": 32, "min_test_sentences": 10}


def _week(root: Path, run_id: str, base: Path, candidate: Path, champion: Path | None = None, test=TEST,
          card: str = "# the model card\n", **params) -> tuple:
    """One evaluate run of the pipeline under `root`: returns (config, scores, the model folders it opened: the
    base's own name, `model` for the candidate, `champion`)."""
    cfg = ready_to_evaluate(root, run_id, base, candidate, champion, test=test, general=GENERAL, card=card,
                            **{**SETTINGS, **params})
    opened = []
    real = engines.open_decoder

    def spy(model_dir, *args, **kwargs):
        opened.append(Path(model_dir).name)
        return real(model_dir, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engines, "open_decoder", spy)
        scores = evaluate.run(cfg)
    return cfg, scores, opened


def _hyp(cfg, test_set: str, role: str) -> str:
    return storage.read_text(cfg.uri(layout.hypotheses(test_set, role)))


def _figures(scores: dict, role: str) -> dict:
    """A role's scores without what says how they were obtained (speed, where they were kept from, the model)."""
    return {k: v for k, v in scores[role].items() if k not in ("seconds", "sentences_per_s", "reused_from", "model")}


@pytest.fixture(scope="module")
def weeks(tmp_path_factory, tiny_model, digits_translator):
    """Week 1: the base and a candidate, nothing published. Week 2: the base, a new candidate, and week 1's
    candidate published as the champion."""
    root = tmp_path_factory.mktemp("reuse")
    first = _week(root, "run-1", tiny_model, digits_translator)
    second = _week(root, "run-2", tiny_model, tiny_model, champion=digits_translator)
    return root, first, second


def test_next_week_decodes_only_the_candidate(weeks):
    root, (cfg1, scores1, opened1), (cfg2, scores2, opened2) = weeks
    assert opened1 == ["model", "tiny-digits"]  # the candidate first, then the base
    assert opened2 == ["model"]  # the candidate; neither the base nor the champion opened
    assert scores2["base"]["reused_from"] == cfg1.run_dir and scores2["champion"]["reused_from"] == cfg1.run_dir
    assert "reused_from" not in scores2["candidate"] and "seconds" in scores2["candidate"]
    # The base's translations of both sets, and the champion's as last week's candidate, to the letter.
    for test_set in ("test", "general"):
        assert _hyp(cfg2, test_set, "base") == _hyp(cfg1, test_set, "base")
    assert _figures(scores2, "base") == _figures(scores1, "base")
    assert _figures(scores2["general"], "base") == _figures(scores1["general"], "base")
    assert _hyp(cfg2, "test", "champion") == _hyp(cfg1, "test", "candidate")
    assert scores2["champion"]["bleu"] == scores1["candidate"]["bleu"] > scores2["base"]["bleu"]
    assert scores2["champion"]["model"] == "org/digits@run-1"
    # Where it shows: the report's decoding line and the bill's line.
    gate.run(cfg2)
    assert f"the base's from `{cfg1.run_dir}`, the champion's from `{cfg1.run_dir}`" in \
        storage.read_text(cfg2.uri(layout.REPORT))
    assert "(the base and champion kept from an earlier run, not decoded again)" in cost.decoding(scores2)
    assert "kept from" not in cost.decoding(scores1)


def test_kept_translations_are_what_a_fresh_decode_gives(weeks, tiny_model, digits_translator):
    """With the kept translations gone, the same run decodes all three models and scores them exactly the same."""
    root, _, (cfg2, scores2, _) = weeks
    kept = Path(cfg2.state_uri(layout.DECODED))
    moved = root / "kept-aside"
    shutil.move(kept, moved)
    try:
        cfg, scores, opened = _week(root, "run-2-fresh", tiny_model, tiny_model, champion=digits_translator)
    finally:
        shutil.rmtree(kept, ignore_errors=True)
        shutil.move(moved, kept)
    assert sorted(opened) == ["champion", "model", "tiny-digits"]
    for role in ("base", "champion"):
        assert "reused_from" not in scores[role]
        assert _figures(scores, role) == _figures(scores2, role)
        assert _hyp(cfg, "test", role) == _hyp(cfg2, "test", role)
    assert _figures(scores["general"], "base") == _figures(scores2["general"], "base")


@pytest.mark.parametrize("change, decoded", [
    ("another beam size", ["champion", "model", "tiny-digits"]),
    ("another engine", ["champion", "model", "tiny-digits"]),
    ("another ctranslate2 version", ["champion", "model", "tiny-digits"]),
    ("one test sentence changed", ["champion", "model", "tiny-digits"]),
    ("another CPU", ["champion", "model", "tiny-digits"]),
    ("a champion file changed", ["champion", "model"]),
    ("the champion's card rewritten", ["model"]),
])
def test_what_changes_the_translations_decodes_again(weeks, tiny_model, digits_translator, tmp_path, monkeypatch,
                                                     change, decoded):
    root, (_, scores1, _), _ = weeks
    shutil.copytree(root / "artifacts", tmp_path / "artifacts")  # the pipeline after week 2, for this case alone
    params, test, champion, card = {}, TEST, digits_translator, "# the model card\n"
    if change == "another beam size":
        params["num_beams"] = 3
    elif change == "another engine":
        assert scores1["decoding"]["engine"] == "ctranslate2"
        params["decode_engine"] = "transformers"
    elif change == "another ctranslate2 version":
        real = decoding.library_versions

        def upgraded(names):
            return {**real(names), **({"ctranslate2": "9.9.9"} if "ctranslate2" in names else {})}

        monkeypatch.setattr(decoding, "library_versions", upgraded)
    elif change == "another CPU":
        real_processor = hardware.processor
        monkeypatch.setattr(hardware, "processor", lambda device: {**real_processor(device), "cpus": 96})
    elif change == "one test sentence changed":
        test = [("nine nine nine", "neun neun neun"), *TEST[1:]]
    elif change == "a champion file changed":
        champion = tmp_path / "models" / "champion-changed"
        shutil.copytree(digits_translator, champion)
        generation = champion / "generation_config.json"
        generation.write_text(generation.read_text() + "\n")
    else:
        card = "# a new card: the card is not read when the model loads\n"
    _, scores, opened = _week(tmp_path, "run-3", tiny_model, tiny_model, champion=champion, test=test, card=card,
                              **params)
    assert sorted(opened) == decoded
    assert ("reused_from" in scores["base"]) is ("tiny-digits" not in decoded)
    assert ("reused_from" in scores["champion"]) is ("champion" not in decoded)


def _entries(cfg, base: Path) -> dict[tuple[str, str], Path]:
    """(role, set) → the kept entry of week 1: the base's and the candidate's, on the test and the general set."""
    entries = {}
    for path in Path(cfg.state_uri(layout.DECODED)).rglob("*.json"):
        if path.name == reuse.USED:
            continue
        entry = json.loads(path.read_text())
        role = "base" if entry["key"]["model"] == reuse.model_fingerprint(base) else "candidate"
        entries[role, "test" if len(entry["hypotheses"]) == len(TEST) else "general"] = path
    assert len(entries) == 4
    return entries


@pytest.mark.parametrize("fault", ["garbled", "not an object", "one translation short", "a line break in a line",
                                   "no run named", "another key's entry"])
def test_an_entry_that_does_not_fit_its_key_is_decoded_again(tmp_path, tiny_model, digits_translator, caplog,
                                                             fault):
    cfg1, _, _ = _week(tmp_path, "run-1", tiny_model, digits_translator)
    entries = _entries(cfg1, tiny_model)
    kept = {role: entries[role, "test"].read_text() for role in ("base", "candidate")}
    for role, other in (("base", "candidate"), ("candidate", "base")):  # what next week's base and champion need
        entry = json.loads(kept[role])
        broken = {"garbled": '{"key": ', "not an object": "[]",
                  "one translation short": json.dumps({**entry, "hypotheses": entry["hypotheses"][:-1]}),
                  "a line break in a line": json.dumps({**entry, "hypotheses": ["a\nb", *entry["hypotheses"][1:]]}),
                  "no run named": json.dumps({k: v for k, v in entry.items() if k != "run_dir"}),
                  # the other model's whole entry, as many lines, under this one's name: only its key tells
                  "another key's entry": kept[other]}[fault]
        entries[role, "test"].write_text(broken)
    with caplog.at_level(logging.WARNING, logger="tasks.evaluate.reuse"):
        cfg2, scores2, opened = _week(tmp_path, "run-2", tiny_model, tiny_model, champion=digits_translator)
    assert sorted(opened) == ["champion", "model", "tiny-digits"]
    assert "reused_from" not in scores2["base"] and "reused_from" not in scores2["champion"]
    assert caplog.text.count("decoding again") == 2
    assert _hyp(cfg2, "test", "base") == _hyp(cfg1, "test", "base")
    # Decoded again, they are kept again, whole.
    _, scores3, opened = _week(tmp_path, "run-3", tiny_model, tiny_model, champion=digits_translator)
    assert opened == ["model"] and scores3["base"]["reused_from"] == cfg2.run_dir


def test_when_one_model_cannot_use_ctranslate2_none_uses_what_it_kept(tmp_path, tiny_model, digits_translator,
                                                                     tiny_m2m100):
    """Week 1 kept CTranslate2 translations. Week 2's champion is a family CTranslate2 does not convert, so every
    model decodes with transformers, and translations kept from another engine are not mixed in."""
    _, scores1, _ = _week(tmp_path, "run-1", tiny_model, digits_translator)
    assert scores1["decoding"]["engine"] == "ctranslate2"
    _, scores2, opened = _week(tmp_path, "run-2", tiny_model, digits_translator, champion=tiny_m2m100)
    assert scores2["decoding"]["engine"] == "transformers"
    assert "reused_from" not in scores2["base"] and "reused_from" not in scores2["champion"]
    assert opened.count("tiny-digits") == 1 and opened.count("model") == 2  # the candidate again, in transformers
    # Week 3 in the same situation finds everything it needs under transformers.
    _, scores3, opened = _week(tmp_path, "run-3", tiny_model, digits_translator, champion=tiny_m2m100)
    assert scores3["decoding"]["engine"] == "transformers" and "reused_from" in scores3["base"]
    assert "reused_from" in scores3["champion"] and "tiny-digits" not in opened


def _kept_models(cfg) -> set[str]:
    """The models with kept translations (an emptied local folder may stay behind: it holds nothing)."""
    return {p.parent.name for p in Path(cfg.state_uri(layout.DECODED)).rglob("*.json") if p.name != reuse.USED}


def test_models_no_run_used_for_five_weeks_are_deleted(tmp_path, tiny_model, digits_translator):
    """Week 1 promotes A; week 2's candidate B is refused; week 3 compares C with A. Every week keeps what the
    last five weeks' runs used, and deletes the rest: B once no run has used it for 35 days."""
    fingerprint = {name: reuse.model_fingerprint(folder) for name, folder in
                   (("base", tiny_model), ("A", digits_translator))}
    candidate_b, candidate_c = tmp_path / "B", tmp_path / "C"
    for folder, mark in ((candidate_b, "b"), (candidate_c, "c")):  # other weights, as far as the key can tell
        shutil.copytree(digits_translator, folder)
        (folder / "train_report.json").write_text(json.dumps({"candidate": mark}))
        fingerprint[folder.name] = reuse.model_fingerprint(folder)
    cfg1, _, _ = _week(tmp_path, "run-1", tiny_model, digits_translator)
    kept = Path(cfg1.state_uri(layout.DECODED))
    assert _kept_models(cfg1) == {fingerprint["base"], fingerprint["A"]}
    assert json.loads((kept / fingerprint["A"] / reuse.USED).read_text())["run_dir"] == cfg1.run_dir
    foreign = kept / ("f" * 64) / ("0" * 64 + ".json")  # translations no run marked as used
    foreign.parent.mkdir()
    foreign.write_text("{}")
    writing = foreign.parent / ".x.json.123.tmp"  # a write going on: hidden files are never listed, nor deleted
    writing.write_text("{")
    _week(tmp_path, "run-2", tiny_model, candidate_b, champion=digits_translator)
    assert _kept_models(cfg1) == {fingerprint["base"], fingerprint["A"], fingerprint["B"]}
    assert not foreign.exists() and writing.exists()
    _, scores3, opened = _week(tmp_path, "run-3", tiny_model, candidate_c, champion=digits_translator)
    assert opened == ["model"] and scores3["champion"]["reused_from"] == cfg1.run_dir
    assert _kept_models(cfg1) == {fingerprint[m] for m in ("base", "A", "B", "C")}  # B was used two weeks ago
    used = kept / fingerprint["B"] / reuse.USED
    long_ago = datetime.now(timezone.utc) - timedelta(days=reuse.KEEP_DAYS + 1)
    used.write_text(json.dumps({**json.loads(used.read_text()), "used": long_ago.isoformat()}))
    _week(tmp_path, "run-4", tiny_model, candidate_c, champion=digits_translator)
    assert _kept_models(cfg1) == {fingerprint[m] for m in ("base", "A", "C")}


def test_the_code_that_decodes_is_part_of_the_key(tmp_path, monkeypatch):
    """A fix to how translations are searched, batched or cleaned (DECODING_CODE) changes the key."""
    shutil.copytree(Path(reuse.__file__).resolve().parents[1], tmp_path / "tasks")
    monkeypatch.setattr(reuse, "_TASKS", tmp_path / "tasks")
    before = reuse.code_revision()
    for name in reuse.DECODING_CODE:
        source = tmp_path / "tasks" / name
        text = source.read_text()
        source.write_text(text + "\n")
        assert reuse.code_revision() != before, name
        source.write_text(text)
    assert reuse.code_revision() == before


def test_a_folder_without_files_has_no_fingerprint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model files"):
        reuse.model_fingerprint(tmp_path / "missing")


def test_a_store_that_cannot_keep_them_costs_a_decode_not_the_run(tmp_path, tiny_model, digits_translator, caplog):
    cfg = make_run(tmp_path / "artifacts", base_model=str(tiny_model), **SETTINGS)
    blocked = Path(cfg.state_uri(layout.DECODED))
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("a file where the folder would be")
    with caplog.at_level(logging.WARNING, logger="tasks.evaluate.reuse"):
        _, scores, opened = _week(tmp_path, "run-1", tiny_model, digits_translator)
    assert opened == ["model", "tiny-digits"]
    assert scores["candidate"]["bleu"] > scores["base"]["bleu"]
    assert "could not keep the test translations for later runs" in caplog.text


def test_pruning_on_s3_deletes_only_the_folders_of_models_no_run_used_lately(s3):
    """The same rule where the state area is an S3 prefix: objects are listed, not folders walked."""
    s3.create_bucket(Bucket="runs")
    cfg = make_run("s3://runs/artifacts")
    kept = reuse.KeptDecodes(cfg, decoding.DecodeSettings.from_config(cfg), {"test": ["one"]})
    recent, old, unmarked = "a" * 64, "b" * 64, "c" * 64
    kept.mark_used({recent, old})
    long_ago = datetime.now(timezone.utc) - timedelta(days=reuse.KEEP_DAYS + 1)
    storage.write_json(cfg.state_uri(layout.DECODED, old, reuse.USED), {"used": long_ago.isoformat()})
    for model in (recent, old, unmarked):
        for entry in ("1" * 64, "2" * 64):
            storage.write_json(cfg.state_uri(layout.DECODED, model, f"{entry}.json"), {"hypotheses": []})
    elsewhere = cfg.state_uri("test_set.json")  # beside decoded/: never the prune's
    storage.write_json(elsewhere, {})
    kept.prune()
    left = {o.relpath.split("/")[0] for o in storage.list_objects(cfg.state_uri(layout.DECODED))}
    assert left == {recent}
    assert len(storage.list_objects(cfg.state_uri(layout.DECODED, recent))) == 3 and storage.exists(elsewhere)
