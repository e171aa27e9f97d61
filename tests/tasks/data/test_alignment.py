"""The alignment screen: targets rotated among sentences of similar length pass every surface filter; the base
model reading both sides must catch them, calibrated on the batch itself."""

import json

import pytest

from support.corpora import demo_catalog_pairs, digit_pairs, rotate_targets, write_jsonl
from support.runs import accounted, make_run, validate_files
from tasks import layout, summary
from tasks.data import alignment, consumed, textnorm
from tasks.io import storage


@pytest.mark.parametrize("sources, expected", [
    (["a", "bb", "ccc", "dddd"], [[1, 2], [0, 2], [1, 3], [2, 1]]),
    (["x", "x", "yy", "zzz"], [[2, 3], [2, 3], [1, 3], [2, 1]]),  # never its own source text, never one twice
])
def test_neighbours_are_the_nearest_distinct_sources_by_length(sources, expected):
    keys = [textnorm.key_of(s) for s in sources]
    assert alignment.neighbours(sources, keys, k=1) == expected


def test_a_neighbour_with_the_same_target_is_never_a_contrast_nor_the_wrong_pairing():
    """Two sources with one translation: each is a true source of the other's target, so neither may stand for
    "another source" of it."""
    sources, targets = ["Quit", "Close", "Save as", "Open file"], ["Beenden", "beenden", "Speichern unter", "Öffnen"]
    keys = [textnorm.key_of(s) for s in sources]
    same = [textnorm.key_of(textnorm.match_key(t)) for t in targets]
    assert alignment.neighbours(sources, keys, k=1) == [[1, 2], [0, 2], [1, 3], [2, 1]]
    assert alignment.neighbours(sources, keys, k=1, target_keys=same) == [[2, 3], [2, 3], [1, 3], [2, 1]]


@pytest.mark.parametrize("own, nulls, expected_share, threshold_between", [
    ([2.0 + i / 100 for i in range(100)], [i / 100 - 0.5 for i in range(100)], 0.0, (0.0, 0.0)),  # clean: 0
    ([2.0 + i / 100 for i in range(70)] + [i / 30 - 0.5 for i in range(30)], [i / 100 - 0.5 for i in range(100)],
     0.3, (0.49, 2.0)),  # above every wrong pairing, below every true pair
])
def test_the_threshold_separates_the_wrong_pairings_from_the_true_ones(own, nulls, expected_share,
                                                                       threshold_between):
    share = alignment.estimated_share(own, nulls)
    assert share == pytest.approx(expected_share, abs=0.02)
    low, high = threshold_between
    assert low <= alignment.calibrated_threshold(own, nulls, share) <= high


def _validate_with_screen(tmp_path, model, files, **params):
    return validate_files(tmp_path / "artifacts", files, base_model=str(model), alignment_screen=True, **params)


def _misaligned(rejects):
    return {(r["file"], r["line"]) for r in rejects if any(x["reason"] == "misaligned" for x in r["reasons"])}


def test_rotated_targets_are_rejected_as_misaligned_with_every_row_accounted_for(tmp_path, digits_translator):
    pairs, rotated = rotate_targets(digit_pairs(600, seed=5), 0.15)
    path = write_jsonl(tmp_path / "part.jsonl", pairs)
    cfg, error = _validate_with_screen(tmp_path, digits_translator, [path])
    assert error is None
    report, clean, rejects = accounted(cfg)
    caught = {line - 1 for _, line in _misaligned(rejects)}
    assert len(caught & rotated) >= 0.9 * len(rotated)
    assert len(caught - rotated) <= 0.05 * (len(pairs) - len(rotated))
    screen = report["alignment"]
    assert screen["screened"] == len(pairs) and screen["misaligned"] == len(caught) == report["rejected"]
    assert screen["histogram"]["pairs"] and sum(screen["histogram"]["wrong_pairings"]) == len(pairs)
    # What the screen cost, as the run's summary says it.
    assert summary.summarize_run(cfg)["screening"] == f"600 new pairs scored in {screen['seconds']:.1f} s on cpu, fp32"
    assert storage.read_bytes(cfg.uri(layout.ALIGNMENT_PLOT)).startswith(b"\x89PNG")  # the histogram, drawn
    assert report["reasons"]["misaligned"]["examples"][0]["detail"].startswith("margin ")
    # Neither the run's training data nor the cleaned copy later runs carry holds a misaligned pair.
    assert not {(r["file"], r["line"]) for r in clean} & _misaligned(rejects)
    manifest = storage.read_json(cfg.uri(layout.PULL_MANIFEST))
    cached = consumed.run_copy_rows(cfg, manifest["objects"][0]["key"])
    assert len(cached) == len(clean)


def test_a_batch_shifted_by_one_line_fails_naming_the_file(tmp_path, digits_translator):
    pairs = digit_pairs(400, seed=6)
    shifted = [(s, t) for (s, _), (_, t) in zip(pairs, pairs[1:])]  # the export lost one target line
    good = write_jsonl(tmp_path / "good.jsonl", digit_pairs(300, seed=7))
    bad = write_jsonl(tmp_path / "shifted.jsonl", shifted)
    cfg, error = _validate_with_screen(tmp_path, digits_translator, [good, bad])
    assert error is not None
    message = str(error)
    assert "misaligned" in message and "max_misaligned_rate" in message and "alignment_screen = false" in message
    assert message.index("shifted.jsonl") < message.index("good.jsonl")  # the worst file first
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert report["alignment"]["files"]["shifted.jsonl"] >= 0.9 * len(shifted)


def test_an_untrained_base_model_cannot_tell_and_fails_closed(tmp_path, tiny_model):
    path = write_jsonl(tmp_path / "part.jsonl", digit_pairs(300, seed=8))
    _, error = _validate_with_screen(tmp_path, tiny_model, [path])
    assert error is not None and "alignment_screen = false" in str(error)


def test_a_set_threshold_overrides_the_calibrated_one(tmp_path, digits_translator):
    path = write_jsonl(tmp_path / "part.jsonl", digit_pairs(200, seed=9))
    cfg, error = _validate_with_screen(tmp_path, digits_translator, [path], alignment_min_margin=-100.0)
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert error is None and report["alignment"]["misaligned"] == 0
    assert report["alignment"]["threshold_from"] == "alignment_min_margin"


# --- the demo's real catalog data with the demo's base model (pretrained once, cached in .cache/demo)

@pytest.fixture(scope="module")
def demo_base_model():
    from demo import base_model

    return base_model.build()


@pytest.fixture(scope="module")
def demo_reverse_model():
    """The same recipe de → en (pretrained once, cached in .cache/demo/reverse-model)."""
    from demo import base_model

    return base_model.build(reverse=True)


def test_a_demo_base_model_stopped_short_of_its_steps_is_refused_not_cached(tmp_path, monkeypatch):
    """A machine too busy for the recipe's steps within its time cap would build another, weaker model (one that
    could not read a pair, on a machine also running the soak): refused with the reason, and nothing cached."""
    from demo import base_model

    monkeypatch.setitem(base_model.RECIPE, "steps", 10**6)
    monkeypatch.setitem(base_model.RECIPE, "minutes", 0.02)
    with pytest.raises(RuntimeError, match=r"stopped at step \d+ of 1000000 after 0.02 minutes.*nothing was cached"):
        base_model.build(tmp_path / "base-model")
    assert not (tmp_path / "base-model").exists() and not (tmp_path / "base-model.building").exists()


@pytest.mark.parametrize("dual", [False, True], ids=["en-de", "dual"])
@pytest.mark.parametrize("share", [0.0, 0.1, 0.3, 0.55])
def test_the_demo_catalogs_with_rotated_targets(tmp_path, request, share, dual):
    """The demo's small base model (BLEU 9 on this domain), 3,000 catalog pairs through validate, screened one way
    or both ways (`dual`: with the same recipe's de → en model as alignment_reverse_models). Measured on three
    builds of the models (README, 'The alignment screen': the same recipe pretrained on machines whose CPU kernels
    round differently): of the rotated pairs that reach the screen, one way catches 67/52/55 %, 72/74/76 % and
    80/82/85 % at 10 %, 30 % and 55 % rotated, both ways 70/58/62 %, 82/78/77 % and 85/83/81 %, at a cost of
    1.6-4.7 % of the untouched ones in the batches that pass; the 55 % batch fails. The issue's goal, 90 % caught,
    is not reached with these models; the floors keep what every build reaches, with room for another."""
    model = request.getfixturevalue("demo_base_model")
    reverse = {"alignment_reverse_models": {"de": str(request.getfixturevalue("demo_reverse_model"))}} if dual else {}
    pairs, rotated = rotate_targets(demo_catalog_pairs(), share)
    path = write_jsonl(tmp_path / "catalog.jsonl", pairs)
    cfg, error = _validate_with_screen(tmp_path, model, [path], skip_filters=["length_ratio"], **reverse)
    rejects = [json.loads(line) for line in storage.read_text(cfg.uri(layout.REJECTS)).splitlines()]
    caught = {line - 1 for _, line in _misaligned(rejects)}
    # Only what reached the screen counts: a surface filter (placeholders, numerals) catches some rotations first.
    screened = set(range(len(pairs))) - {r["line"] - 1 for r in rejects} | caught
    rotated &= screened
    lost = len(caught - rotated) / len(screened - rotated)
    report = storage.read_json(cfg.uri(layout.VALIDATION_REPORT))
    assert report["alignment"].get("reverse_model") == (reverse["alignment_reverse_models"]["de"] if dual else None)
    detail = report["reasons"]["misaligned"]["examples"][0]["detail"]
    assert detail.startswith("margin ") and ("read both ways" in detail) == dual
    recall = len(caught & rotated) / len(rotated) if rotated else None
    print(f"measured: share {share} dual {dual}: caught {recall} of {len(rotated)}, lost {lost:.3f}")
    if share == 0.0:
        assert error is None and lost <= 0.03
        return
    floor = {(0.1, False): 0.45, (0.3, False): 0.65, (0.55, False): 0.72,
             (0.1, True): 0.5, (0.3, True): 0.7, (0.55, True): 0.75}[share, dual]
    assert recall >= floor, (recall, lost)
    if share < 0.55:
        assert error is None and lost <= 0.05, (recall, lost)
    else:  # the batch fails, naming its file: nothing of it trains, and 4-8.4 % of its true pairs are flagged too
        assert error is not None and "catalog.jsonl" in str(error) and "misaligned" in str(error)
        assert lost <= 0.1, (recall, lost)


def test_replayed_general_pairs_are_screened_before_they_join_the_mix(tmp_path, digits_translator):
    """A curated general corpus can hold shifted lines too: the replayed sample is screened with the base model,
    and the pairs it refuses leave the mix for replay_rejects.jsonl, each with its margin."""
    from tasks.data import replay

    general, rotated = rotate_targets(digit_pairs(400, seed=21), 0.3, seed=4)
    path = write_jsonl(tmp_path / "general" / "general.jsonl", general)
    cfg = make_run(tmp_path / "artifacts", base_model=str(digits_translator), alignment_screen=True,
                   replay_data_uri=str(path), replay_fraction=0.6, max_source_length=64, max_target_length=64,
                   max_misaligned_rate=0.5)
    domain = [p for p in digit_pairs(400, seed=22) if p[0] not in {s for s, _ in general}]
    mixed = replay.for_run(cfg, domain)
    assert mixed.pairs[:len(domain)] == domain  # the domain's pairs are validation's business, not replay's
    replayed = set(mixed.pairs[len(domain):])
    rejects = [json.loads(line) for line in storage.read_text(cfg.uri(layout.REPLAY_REJECTS)).splitlines()]
    refused = {(r["source"], r["target"]) for r in rejects}
    # Each named by its file and line, as validation's rejects are.
    assert all(r["file"] == str(path) and general[r["line"] - 1] == (r["source"], r["target"]) for r in rejects)
    wrong = {general[i] for i in rotated}
    assert len(refused & wrong) >= 0.9 * len(wrong) and len(refused - wrong) <= 0.05 * (len(general) - len(wrong))
    # The sample wants more than the corpus holds (repeated): every general pair is in the mix or refused.
    assert not replayed & refused and replayed | refused == set(general)
    screen = mixed.report["alignment"]
    assert screen["misaligned"] == len(refused) and mixed.report["general_pairs"] == len(mixed.pairs) - len(domain)


def test_a_general_corpus_misaligned_over_the_rate_fails_the_run_instead_of_training_without_replay(
        tmp_path, digits_translator):
    """30 % of its lines rotated: replayed as it is, the model trains on them; screened out, there is little replay
    left and forgetting goes unchecked. Over max_misaligned_rate the corpus is broken, as new data would be."""
    from tasks.data import replay

    general, _ = rotate_targets(digit_pairs(400, seed=21), 0.3, seed=4)
    path = write_jsonl(tmp_path / "general" / "general.jsonl", general)
    cfg = make_run(tmp_path / "artifacts", base_model=str(digits_translator), alignment_screen=True,
                   replay_data_uri=str(path), replay_fraction=0.6, max_source_length=64, max_target_length=64)
    with pytest.raises(replay.ReplayDataError, match=r"refused \d+ of 400 sampled general pairs \(\d+% > "
                                                     r"max_misaligned_rate 20%\)"):
        replay.for_run(cfg, digit_pairs(400, seed=22))
    assert storage.read_text(cfg.uri(layout.REPLAY_REJECTS)).count("\n") >= 100  # listed, to see what is wrong


def test_replay_is_not_screened_when_the_screen_is_off(tmp_path):
    from tasks.data import replay

    path = write_jsonl(tmp_path / "general" / "general.jsonl", digit_pairs(50, seed=3))
    cfg = make_run(tmp_path / "artifacts", replay_data_uri=str(path), replay_fraction=0.5)  # no model is loaded
    mixed = replay.for_run(cfg, digit_pairs(50, seed=4))
    assert "alignment" not in mixed.report and not storage.exists(cfg.uri(layout.REPLAY_REJECTS))


def test_the_general_domain_test_set_is_screened_like_new_data(tmp_path, digits_translator):
    """Forgetting is measured on the general-domain test set: shifted lines there would make it measure noise."""
    from tasks.data import split

    general, rotated = rotate_targets(digit_pairs(300, seed=31), 0.3, seed=5)
    path = write_jsonl(tmp_path / "general" / "general.jsonl", general)
    cfg = make_run(tmp_path / "artifacts", base_model=str(digits_translator), alignment_screen=True,
                   general_eval_uri=str(path), min_test_pairs=10, max_source_length=64, max_target_length=64)
    (tmp_path / "scratch").mkdir()
    found = split._general_test(cfg, tmp_path / "scratch")
    kept = {(r["translation"]["en"], r["translation"]["de"]) for r in map(json.loads, storage.read_text(
        cfg.uri(layout.split_file(layout.GENERAL_TEST))).splitlines())}
    wrong = {general[i] for i in rotated}
    assert found["reasons"]["misaligned"] >= 0.9 * len(wrong) and len(kept & wrong) <= 0.1 * len(wrong)
    assert len(set(general) - wrong - kept) <= 0.05 * (len(general) - len(wrong))
