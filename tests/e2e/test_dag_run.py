"""The DAG end to end through Airflow: data from moto's S3, training through the local launcher, real
sacrebleu scores, and a publish through the real huggingface_hub client to a local Hub-compatible server."""

import json

import yaml

from tasks import config, cost, layout, summary
from tasks.io import storage


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
    curve = ("learning_curve_point", "learning_curve")  # skipped: this run asks for no learning curve
    assert all(state == "success" for task, state in states.items() if task not in curve), states
    assert [states[task] for task in curve] == ["skipped", "skipped"], states

    decision = storage.read_json(f"{run_dir}/{layout.GATE}")
    assert decision["decision"] == "promote"
    assert decision["bleu"]["candidate"] > decision["bleu"]["base"] + 1.0
    validation = storage.read_json(f"{run_dir}/validation_report.json")
    assert validation["rows_in"] == validation["kept"] + validation["rejected"] + validation["deduplicated"]
    assert validation["rejected"] == 2 and validation["deduplicated"] == 1

    (commit, *_) = hub_connection.commits("mlops/digits-en-de")
    assert {"model.safetensors", "config.json", "generation_config.json", "vocab.json", "source.spm",
            "README.md", "eval/scores.json", "eval/gate.json", "provenance/pull_manifest.json",
            "release.json"} <= set(commit["files"])
    card = commit["files"]["README.md"].decode()
    metadata = yaml.safe_load(card.split("---")[1])
    results = metadata["model-index"][0]["results"][0]
    bleu = {m["type"]: m["value"] for m in results["metrics"]}["bleu"]
    assert bleu == decision["bleu"]["candidate"]
    # The base model here is a local folder: the Hub takes only Hub ids as base_model, so the body names it.
    assert "base_model" not in metadata and f"a local model (`{run_conf['base_model']}`)" in card
    assert metadata["language"] == ["en", "de"]
    assert "s3://domain-data/en-de/" in card and metadata["mt_retrain"]["data_sources"] == [run_conf["data_uri"]]
    published = storage.read_json(f"{run_dir}/publish.json")
    assert published["revision"] == commit["oid"]
    assert hub_connection.tags("mlops/digits-en-de")[published["tag"]]["target"] == commit["oid"]
    assert _extra_link(dag_run, "publish", "Published model") == published["url"] == published["commit_url"]
    # The gate's report and the first run's champion lookup are in the run directory.
    assert storage.read_json(f"{run_dir}/champion.json") == {
        "found": False, "reason": "nothing published at mlops/digits-en-de yet", "registry_revision": None}
    report = storage.read_text(f"{run_dir}/report.md")
    assert "## Promotion gate: PROMOTE" in report
    # What training cost, from the train report of the training that ran: in the summary, report.md and the card.
    trained = storage.read_json(f"{run_dir}/{layout.TRAIN_REPORT}")
    spent = cost.training(trained)
    assert trained["seconds_total"] > 0 and f"{trained['steps']} steps" in spent and "on 1 × cpu, " in spent
    assert f"{trained['tokens_seen']:,} tokens, {trained['tokens_seen'] / trained['seconds_total']:,.0f} tokens/s" \
        in spent and f"- training: {spent}\n" in report
    assert f"| compute | {spent} |" in card
    summarized = summary.summarize_run(config.load(run_dir))
    assert summarized["training"] == spent and summarized["decoding"] == cost.decoding(
        storage.read_json(f"{run_dir}/{layout.SCORES}"))
    assert f"- decoding: {summarized['decoding']}" in report and " s by the candidate" in summarized["decoding"]
    assert summarized["screening"] is None and "- screening:" not in report  # these runs screen nothing
    # Each GPU step's try, recorded by the launcher that ran it, whole: the loop and the step's own work inside.
    launched = storage.read_json(f"{run_dir}/{layout.LAUNCHES}")
    assert {step: [(t["try"], t["launcher"], t["gpus"], t["outcome"]) for t in tries]
            for step, tries in launched.items()} == {step: [(1, "local", None, "succeeded")]
                                                     for step in ("validate", "train", "evaluate")}
    assert launched["train"][0]["seconds"] > trained["seconds_total"]
    assert summarized["launches"] == cost.launches(launched) and summarized["launches"].startswith("validate ")
    assert f"- the steps, from launch to end: {summarized['launches']}\n" in report


def _extra_link(dag_run, task_id: str, name: str) -> str:
    """The link as the API server resolves it: the serialized task reads what the worker stored in XCom."""
    from airflow.models.serialized_dag import SerializedDagModel

    task = SerializedDagModel.get_dag(dag_run.dag_id).get_task(task_id)
    assert name in task.extra_links
    # One pair: its mapped instance, or the unexpanded task when everything before it was skipped.
    ti = dag_run.get_task_instance(task_id, map_index=0) or dag_run.get_task_instance(task_id)
    return task.get_extra_links(ti, name)


def test_a_candidate_that_does_not_gain_enough_is_not_published(dag, run_conf, hub_connection):
    run_conf.update(min_bleu_gain=100.0, max_steps=20)
    dag_run, states, run_dir = _run(dag, run_conf)
    assert dag_run.state == "success", states
    assert states["publish"] == "skipped" and states["summary"] == "success"
    decision = storage.read_json(f"{run_dir}/{layout.GATE}")
    assert decision["decision"] == "refuse"
    assert "< min_bleu_gain 100.0" in decision["reasons"][0]
    writes = [r for r in hub_connection.requests if r["method"] in ("POST", "PUT", "DELETE")]
    assert writes == []
    assert not storage.exists(f"{run_dir}/publish.json")
    assert _extra_link(dag_run, "publish", "Published model") == ""
    assert json.loads(json.dumps(decision))  # gate.json is plain JSON for any reader


def test_a_learning_curve_fans_out_beside_the_candidate(dag, run_conf, hub_connection):
    run_conf.update(learning_curve_fractions=[0.5], min_bleu_gain=100.0, max_steps=20)
    dag_run, states, run_dir = _run(dag, run_conf)
    assert dag_run.state == "success", states
    assert states["learning_curve_point"] == states["learning_curve"] == "success", states
    rows = storage.read_json(f"{run_dir}/learning_curve.json")["points"]
    assert [r["model"] for r in rows] == ["base", "curve point", "candidate"]
    half, everything = rows[1]["domain_train_pairs"], rows[2]["domain_train_pairs"]
    assert half == round(everything * 0.5)
    assert storage.exists(f"{run_dir}/learning_curve.png") and storage.exists(f"{run_dir}/learning_curve.md")
    assert storage.exists(f"{run_dir}/curve/f0.5/model/model.safetensors")
    # What each model cost, as the launcher billed it: the point's launch (training and scoring), the candidate's.
    point_tries = storage.read_json(f"{run_dir}/curve/f0.5/{layout.LAUNCHES}")["curve"]
    (candidate_try,) = storage.read_json(f"{run_dir}/{layout.LAUNCHES}")["train"]
    assert [(t["try"], t["launcher"], t["outcome"]) for t in point_tries] == [(1, "local", "succeeded")]
    assert rows[1]["training"] == f"{cost.duration(point_tries[0]['seconds'])} on 1 × cpu"
    assert rows[2]["training"] == f"{cost.duration(candidate_try['seconds'])} on 1 × cpu"
    assert point_tries[0]["seconds"] > rows[1]["train_seconds"]  # the launch holds the loop, and more


def test_a_worse_candidate_is_refused_and_nothing_is_published(dag, run_conf, hub_connection, s3, tmp_path,
                                                               digits_translator):
    """A good base model fine-tuned on shuffled targets (every source paired with another's translation)
    comes out worse than it went in: the gate must refuse it."""
    import random

    from support.corpora import digit_pairs, write_jsonl

    pairs = digit_pairs(1500, seed=12)
    targets = [t for _, t in pairs]
    random.Random(0).shuffle(targets)
    s3.create_bucket(Bucket="shuffled")
    s3.upload_file(str(write_jsonl(tmp_path / "shuffled.jsonl", [(s, t) for (s, _), t in zip(pairs, targets)])),
                   "shuffled", "en-de/part.jsonl")
    run_conf.update(data_uri="s3://shuffled/en-de/", base_model=str(digits_translator))
    dag_run, states, run_dir = _run(dag, run_conf)

    assert dag_run.state == "success", states  # a refusal is a normal end
    assert states["language.gate"] == "success" and states["publish"] == "skipped"
    decision = storage.read_json(f"{run_dir}/{layout.GATE}")
    assert decision["decision"] == "refuse" and decision["bleu"]["gain"] < 0
    failed = {c["name"] for c in decision["checks"] if not c["passed"]}
    assert {"bleu_gain", "gain_significant"} <= failed
    assert any(r.startswith("BLEU gain over base -") for r in decision["reasons"])
    assert [r for r in hub_connection.requests if r["method"] in ("POST", "PUT", "DELETE")] == []
    report = storage.read_text(f"{run_dir}/report.md")
    assert "## Promotion gate: REFUSE" in report and "| bleu_gain |" in report
