"""Where everything lives: the artifact names of a run directory and of a pipeline's state area.

A run directory, `{artifact_root}/{dag_id}/{run_id}/` (a pair of a multi-language run: `.../pairs/{src}-{tgt}/`),
holds what each step wrote, in the order the steps run:

    config.json                 prepare      the validated run config, read back by every step
    pull_manifest.json, raw/    pull         what was pulled (written last: raw/ is complete)
    clean.jsonl, rejects.jsonl  validate     every row read ends in one of the two
    validation_report.json      validate
    splits/{train,validation,test,general_test}.jsonl, split_report.json      split
    model/ (train_report.json last), checkpoints/                              train
    champion/, champion.json    champion     the published model the gate compares with
    eval/ (scores.json last)    evaluate     hypotheses, per-sentence scores, scores with signatures
    gate.json, report.md, report.png         gate
    release_gate.json           release_gate: were the run's languages released together
    publish.json                publish
    curve/f<share>/             learning-curve points, each a run directory of its own
    launches.json               the launcher, after each try of a GPU step: seconds from launch to end, GPUs

The state area, `{artifact_root}/{dag_id}/state/{src}-{tgt}-{hash of data_uri}/`, holds what carries over from
run to run of one pipeline: the objects consumed so far (consumed.json), their cleaned copies (shards/), the frozen
test set, and the translations of it that later runs reuse (decoded/).

Names are '/'-separated paths relative to the run directory, for `RunConfig.uri(...)`. No step imports another
step for a file name: they all come from here.
"""

from __future__ import annotations

# --- run directory
CONFIG = "config.json"
PULL_MANIFEST = "pull_manifest.json"
RAW = "raw"
CLEAN = "clean.jsonl"
REJECTS = "rejects.jsonl"
# The run's cleaned copies of its objects, one after another, and each object's lines in them: mark_consumed
# makes them a shard of the pipeline's (tasks/data/shards.py).
CLEANED_COPIES = "cleaned/copies.jsonl"
CLEANED_INDEX = "cleaned/index.json"
VALIDATION_REPORT = "validation_report.json"
ALIGNMENT_PLOT = "alignment.png"  # the alignment screen's margins, when it ran
SPLITS = "splits"
SPLIT_REPORT = "split_report.json"
GENERAL_TEST = "general_test"  # the general-domain test split, when the run has general_eval_uri
GENERAL_REJECTS = f"{SPLITS}/general_rejects.jsonl"
MODEL = "model"
REPLAY_REJECTS = "replay_rejects.jsonl"  # train: replayed general pairs the alignment screen refused, with why
TRAIN_REPORT_NAME = "train_report.json"  # inside model/, written last: its presence marks the model complete
TRAIN_REPORT = f"{MODEL}/{TRAIN_REPORT_NAME}"
CHECKPOINTS = "checkpoints"
CHAMPION = "champion"
CHAMPION_RECORD = "champion.json"
EVAL = "eval"
SCORES = f"{EVAL}/scores.json"  # written last by evaluate
GATE = "gate.json"
REPORT = "report.md"
REPORT_PLOT = "report.png"
RELEASE_GATE = "release_gate.json"  # the verdict of the run's release gate, in each language's directory
PUBLISH = "publish.json"
CURVE = "curve"
CURVE_POINT_SPEC = "curve_point.json"  # in a point's run directory: its share and the run it belongs to
CURVE_POINT_RESULT = "curve_point_result.json"
CURVE_JSON, CURVE_MD, CURVE_PNG = "learning_curve.json", "learning_curve.md", "learning_curve.png"
LAUNCHES = "launches.json"  # every try of each GPU step, by the launcher (plugins/mt_airflow/launches.py)
HUB_REVISIONS = "hub_revisions.json"  # the commit of each Hub model the run loads, pinned by the first step to load it

# --- pipeline state area
CONSUMED = "consumed.json"
TEST_SET = "test_set.jsonl"
TEST_SET_META = "test_set.json"  # written last: its presence means the frozen set is complete
DECODED = "decoded"  # models' translations of the frozen sets, for later runs to reuse (tasks/evaluate/reuse.py)

# --- test sets and model roles in eval/
TEST = "test"
GENERAL = "general"
ROLES = ("base", "candidate", "champion")


def split_file(name: str) -> str:
    """splits/{name}.jsonl: train, validation, test or general_test."""
    return f"{SPLITS}/{name}.jsonl"


def eval_file(test_set: str, suffix: str) -> str:
    """eval/{test_set}.{suffix}: src, ref, {role}.hyp or {role}.sentences.jsonl."""
    return f"{EVAL}/{test_set}.{suffix}"


def hypotheses(test_set: str, role: str) -> str:
    return eval_file(test_set, f"{role}.hyp")


def sentence_scores(test_set: str, role: str) -> str:
    return eval_file(test_set, f"{role}.sentences.jsonl")
