import pytest

from tasks import config


def _build(**params):
    return config.build(params, dag_id="translation_finetune", run_id="manual__2026-11-27T06:51:49+00:00",
                        artifact_root="/tmp/artifacts")


def test_defaults_name_the_production_model():
    cfg = _build()
    assert cfg.base_model == "Helsinki-NLP/opus-mt-en-de"
    assert (cfg.source_lang, cfg.target_lang, cfg.launcher) == ("en", "de", "local")


def test_run_dir_is_derived_from_dag_and_run_id():
    cfg = _build()
    assert cfg.run_dir == "/tmp/artifacts/translation_finetune/manual__2026-11-27T06_51_49_00_00"
    s3 = config.build({}, dag_id="d", run_id="r 1", artifact_root="s3://bucket/prefix/")
    assert s3.run_dir == "s3://bucket/prefix/d/r_1"


def test_a_run_whose_id_names_the_folder_of_another_run_is_told_so(tmp_path):
    """A trigger user may choose `scheduled__2026-12-14T00_00_00_00_00`: the folder of the scheduled run to come."""
    build = lambda run_id: config.build({}, dag_id="d", run_id=run_id, artifact_root=str(tmp_path))  # noqa: E731
    config.save(build("scheduled__2026-12-14T00_00_00_00_00"))
    scheduled = build("scheduled__2026-12-14T00:00:00+00:00")
    with pytest.raises(config.ConfigError, match=r"belongs to run 'scheduled__2026-12-14T00_00_00_00_00', whose "
                                                 r"id names the same folder as 'scheduled__2026-12-14T00:00:00\+00"):
        config.save(scheduled)


@pytest.mark.parametrize("params, field, words", [
    ({"source_lang": "EN"}, "source_lang", "pattern"),
    ({"target_lang": "en"}, "config", "both 'en'"),
    ({"min_bleu_gain": "lots"}, "min_bleu_gain", "valid number"),
    ({"launcher": "slurm"}, "launcher", "'local', 'docker' or 'kubernetes'"),
    ({"test_fraction": 0.6}, "test_fraction", "less than 0.5"),
    ({"test_fraction": 0.45, "validation_fraction": 0.45}, "config", "less than 10%"),
    ({"hub_repo_id": "no-namespace"}, "hub_repo_id", "must be namespace/name"),
    ({"data_uri": ""}, "data_uri", "at least 1 character"),
    ({"learning_rate": 0}, "learning_rate", "greater than 0"),
    ({"max_tokens_per_batch": 100}, "max_tokens_per_batch", "0 (automatic) or at least 256"),
    ({"publish_target": "local"}, "config", "publish_target 'local' needs registry_uri"),
    ({"publish_target": "local", "registry_uri": "/tmp/models", "create_pr": True}, "config",
     "create_pr needs publish_target 'hub'"),
    ({"publish_target": "gcs"}, "publish_target", "'hub' or 'local'"),
    ({"alignment_reverse_models": {"nl": "Helsinki-NLP/opus-mt-nl-en"}}, "config",
     "alignment_reverse_models names languages that are not target languages: ['nl']"),
    ({"alignment_reverse_models": {"de": "a/../b"}}, "alignment_reverse_models", "neither a Hub model id"),
    # The Hub refuses a model card naming another license: publish would fail after training and the gate.
    ({"model_license": "Apache-2.0"}, "config", "model_license 'Apache-2.0' is not a license id the Hub accepts in a "
                                                "model card (did you mean 'apache-2.0'?)"),
    ({"model_license": "gpl-2.0-or-later"}, "config", "use 'other'"),
    # Each point is a training of its own on the GPU: 200 of them cost 100 times the candidate's own training.
    ({"learning_curve_fractions": [i / 200 for i in range(1, 201)]}, "learning_curve_fractions", "at most 8 items"),
])
def test_bad_params_are_rejected_with_the_field_named(params, field, words):
    with pytest.raises(config.ConfigError) as err:
        _build(**params)
    assert f"- {field}:" in str(err.value)
    assert words in str(err.value)


def test_a_check_of_several_fields_names_them_without_the_whole_config():
    with pytest.raises(config.ConfigError) as err:
        _build(source_lang="de", target_lang="de")
    message = str(err.value)
    assert "- config: Value error, source_lang and target_lang are both 'de'" in message
    assert "(got" not in message and "num_beams" not in message  # not ~70 fields of the config


def test_unknown_params_are_rejected():
    with pytest.raises(config.ConfigError, match=r"unknown parameter\(s\) \['epochs'\]"):
        _build(epochs=3)


def test_param_specs_follow_the_config_schema():
    specs = config.param_specs()
    assert set(specs) == set(config.PipelineParams.model_fields)
    for name, spec in specs.items():
        field = config.PipelineParams.model_fields[name]
        assert spec["default"] == field.default
        assert spec["title"] and spec["description"] and spec["section"]
    assert specs["launcher"]["enum"] == ["local", "docker", "kubernetes"]
    assert specs["min_bleu_gain"]["type"] == "number"
    assert specs["push_to_hub"]["type"] == "boolean"


def test_save_and_load_round_trip_and_refuse_a_changed_config(tmp_path):
    cfg = config.build({"min_bleu_gain": 2.5}, dag_id="d", run_id="r", artifact_root=str(tmp_path))
    config.save(cfg)
    assert config.load(cfg.run_dir) == cfg
    config.save(cfg)  # a retry of the same run is fine
    changed = config.build({"min_bleu_gain": 3.0}, dag_id="d", run_id="r", artifact_root=str(tmp_path))
    with pytest.raises(config.ConfigError, match="different configuration"):
        config.save(changed)


def test_every_param_has_a_known_section_and_a_description_that_is_not_one():
    sections = {"Data", "Validation", "Split", "Training", "Evaluation and promotion gate", "Publishing",
                "Where it runs"}
    for name, spec in config.param_specs().items():
        assert spec["section"] in sections, name
        assert spec["description"] not in sections, name  # the two were once swapped


def test_the_state_of_a_pipeline_lives_beside_its_runs():
    cfg = _build(data_uri="s3://data/en-de/")
    assert cfg.state_dir.startswith("/tmp/artifacts/translation_finetune/state/en-de-")
    assert cfg.state_uri("consumed.json") == cfg.state_dir + "/consumed.json"


def test_a_local_registrys_card_may_name_any_license():
    cfg = _build(publish_target="local", registry_uri="/tmp/models", model_license="proprietary")
    assert cfg.model_license == "proprietary"
