"""The DAG end to end through Airflow: data from moto's S3, training through the local launcher, real
sacrebleu scores, and a publish through the real huggingface_hub client to a local Hub-compatible server."""

import json

import yaml

from tasks import gate, storage


def _run(dag, conf):
    dag_run = dag.test(run_conf=conf)
    states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
    run_dir = next(o.uri for o in storage.list_objects("s3://artifacts/runs/translation_finetune")
                   if o.relpath.startswith(dag_run.run_id.replace(":", "_").replace("+", "_"))
                   and o.relpath.endswith("/config.json")).rsplit("/", 1)[0]
    return dag_run, states, run_dir


def test_a_better_candidate_is_published_with_its_metrics(dag, run_conf, hub_connection):
    dag_run, states, run_dir = _run(dag, run_conf)
    assert dag_run.state == "success", states
    assert all(state == "success" for state in states.values()), states

    decision = storage.read_json(f"{run_dir}/{gate.GATE}")
    assert decision["decision"] == "promote"
    assert decision["bleu"]["candidate"] > decision["bleu"]["base"] + 1.0
    validation = storage.read_json(f"{run_dir}/validation_report.json")
    assert validation["rows_in"] == validation["kept"] + validation["rejected"] + validation["deduplicated"]
    assert validation["rejected"] == 2 and validation["deduplicated"] == 1

    (commit, *_) = hub_connection.commits("mlops/digits-en-de")
    assert {"model.safetensors", "config.json", "generation_config.json", "vocab.json", "source.spm",
            "README.md", "eval/scores.json", "eval/gate.json"} <= set(commit["files"])
    card = commit["files"]["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    results = metadata["model-index"][0]["results"][0]
    bleu = {m["type"]: m["value"] for m in results["metrics"]}["bleu"]
    assert bleu == decision["bleu"]["candidate"]
    assert metadata["base_model"] == run_conf["base_model"] and metadata["language"] == ["en", "de"]
    assert "s3://domain-data/en-de/" in card
    published = storage.read_json(f"{run_dir}/publish.json")
    assert published["revision"] == commit["oid"]


def test_a_candidate_that_does_not_gain_enough_is_not_published(dag, run_conf, hub_connection):
    run_conf.update(min_bleu_gain=1000.0, max_steps=20)
    dag_run, states, run_dir = _run(dag, run_conf)
    assert dag_run.state == "success", states
    assert states["publish"] == "skipped" and states["summary"] == "success"
    decision = storage.read_json(f"{run_dir}/{gate.GATE}")
    assert decision["decision"] == "refuse"
    assert "< min_bleu_gain 1000.0" in decision["reasons"][0]
    writes = [r for r in hub_connection.requests if r["method"] in ("POST", "PUT", "DELETE")]
    assert writes == []
    assert not storage.exists(f"{run_dir}/publish.json")
    assert json.loads(json.dumps(decision))  # gate.json is plain JSON for any reader
