"""The one typed configuration of a retraining run.

`PipelineParams` is what a user sets when triggering the DAG; its JSON schema *is* the DAG's Params
(`param_specs()`), so the trigger form and the validation here cannot drift apart. `RunConfig` adds what
the DAG knows about the run itself. It is validated once, written to `config.json` in the run directory
and read back by every step, in the Airflow worker and in the training container alike.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from tasks import layout, locations
from tasks.io import storage

_DATA = "Data"
_VALIDATE = "Validation"
_SPLIT = "Split"
_TRAIN = "Training"
_EVAL = "Evaluation and promotion gate"
_PUBLISH = "Publishing"
_RUNTIME = "Where it runs"


def _field(default: Any, title: str, section: str, description: str, **constraints: Any) -> Any:
    return Field(default, title=title, description=description, json_schema_extra={"section": section},
                 **constraints)





# The pair filters of tasks/data/filters.py, by the reason they write into rejects.jsonl. Spelled out here so the
# trigger form offers them; tests/tasks/data/test_filters.py checks that the two lists agree.
FilterName = Literal["empty", "too_short", "too_long", "length_ratio", "identical", "wrong_language",
                     "numerals", "placeholders", "markup", "control_chars", "encoding"]


# The license ids the Hub accepts in a model card's metadata: it refuses a commit whose README.md names another
# ("Invalid metadata in README.md", e.g. for `Apache-2.0` or `gpl-2.0-or-later`), which would fail publish after the
# run trained and passed its gate. `other` for any license not listed.
HUB_LICENSES = (
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0", "cc-by-sa-3.0",
    "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0", "cc-by-nc-nd-3.0",
    "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "cdla-sharing-1.0",
    "cdla-permissive-1.0", "cdla-permissive-2.0", "wtfpl", "ecl-2.0", "epl-1.0", "epl-2.0", "etalab-2.0", "eupl-1.1",
    "eupl-1.2", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1", "lgpl-3.0", "isc", "h-research",
    "intel-research", "lppl-1.3c", "ms-pl", "apple-ascl", "apple-amlr", "mpl-2.0", "odc-by", "odbl", "openmdw-1.0",
    "openrail++", "osl-3.0", "postgresql", "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr",
    "deepfloyd-if-license", "fair-noncommercial-research-license", "llama2", "llama3", "llama3.1", "llama3.2",
    "llama3.3", "llama4", "grok2-community", "gemma", "unknown", "other")


def pair_data_uri(data_uri: str, source_lang: str, target_lang: str) -> str:
    """Where a pair of a multi-language run reads its data: `{data_uri}/{src}-{tgt}/`. The runs pull it and the
    watcher lists it (and finds the pair's consumed state by it), so both must build it here."""
    return storage.join(data_uri, f"{source_lang}-{target_lang}") + "/"


def entries_of(uris: list[str], folder: str) -> list[str]:
    """The entries of a data_snapshot or retract_data that concern `folder`: those in it, and a folder above it (one
    ending in '/'), which stands for the whole of it."""
    found = [uri if uri.startswith(folder) else folder for uri in uris
             if uri.startswith(folder) or (uri.endswith("/") and folder.startswith(uri))]
    return list(dict.fromkeys(found))


class ConfigError(ValueError):
    """A run configuration that cannot be used; the message names every bad field and why."""


LanguageCode = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]
# Params that name a place, checked against the deployment's rules (tasks/locations.py).
LOCATIONS = ("data_uri", "data_snapshot", "retract_data", "general_eval_uri", "replay_data_uri", "registry_uri")
READ_AS_DATA = ("data_uri", "general_eval_uri", "replay_data_uri")  # what a local registry must keep apart from
# Checked at the trigger by the Params' schema, as a JSON-schema `format` named in words (what is allowed and the
# setting that governs it) whose check is the regular expression (plugins/mt_airflow/params.py registers it), and
# by a validator here that says why. Each: () -> (words, regular expression).
_SCHEMA_FORMATS = {
    "hub_repo_id": lambda: (locations.HUB_REPO_WORDS, locations.HUB_REPO_PATTERN),
    "base_model": lambda: (locations.model_words(), locations.model_pattern()),
    **{name: lambda: (locations.place_words(), locations.pattern()) for name in LOCATIONS}}
MAX_STEPS = 10_000_000


class PipelineParams(BaseModel):
    # allow_inf_nan: `inf` epochs or a NaN learning rate is refused here, not found by a crash in training;
    # validate_default: an optional list left null by the form reads as empty, like one the user emptied.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True)

    # --- data
    data_uri: str = _field(
        "s3://translation-data/en-de/incoming/", "Fresh data", _DATA,
        "Where new parallel data lands: an S3 prefix (s3://bucket/prefix/) or a local folder. Only objects "
        "that no successful run has consumed yet (new key or changed ETag) are pulled. Formats: JSONL with "
        "translation dicts, TSV, CSV, TMX, gettext PO and MO, Parquet. Local folders must lie under the "
        "deployment's MT_LOCAL_DATA_ROOTS.", min_length=1)
    force_full_retrain: bool = _field(
        False, "Retrain on everything", _DATA,
        "Pull every object under the data URI, consumed or not. Off: a run with nothing new ends early "
        "(skipped, not failed).")
    training_data: Literal["all", "new_only"] = _field(
        "all", "Training data", _DATA,
        "all: train on the pipeline's whole domain corpus, every object consumed by earlier successful runs "
        "(their cleaned copies, kept in the pipeline's state) plus the new ones, deduplicated across all of "
        "them, the frozen test set excluded; a weekly candidate then knows at least what the champion knew. "
        "new_only: only the objects this run pulled. New data still decides whether a run trains at all.")
    data_snapshot: list[str] | None = _field(
        None, "Data snapshot", _DATA,
        "Exactly these object URIs (files or s3://bucket/key; a URI ending in '/' stands for what is under it) "
        "instead of what is new under the data URI, and nothing carried from earlier runs. An entry may pin a "
        "version: URI#etag=<ETag> (found among the versions a versioned S3 bucket keeps if the object changed "
        "since; refused in words if none has it) or URI#version=<S3 VersionId>. To reproduce an old run, paste "
        "the list in its pull_manifest.json under reproduce.data_snapshot. A snapshot run consumes nothing: the "
        "pipeline's next run still sees its objects as they were. Every entry must lie under the data URI.")
    retract_data: list[str] | None = _field(
        None, "Retract data", _DATA,
        "Object URIs, or prefixes ending in '/', under the data URI that the pipeline must forget, for good: "
        "from this run on they are neither pulled nor carried, and their cleaned copies leave the pipeline's "
        "state (consumed.json lists them under dropped, with the run that retracted them). The run retrains "
        "without them even when nothing else is new, and the model cards of this and later releases list every "
        "retraction. A model already published stays published until a new one is promoted.")
    general_eval_uri: str | None = _field(
        None, "General-domain test set", _DATA,
        "Optional file, folder or S3 prefix of general-domain pairs, validated like the fresh data into "
        "splits/general_test.jsonl, to catch catastrophic forgetting. Empty: none.")
    source_lang: str = _field("en", "Source language", _DATA, "ISO 639 code (two or three letters) of the source side.",
                              pattern=r"^[a-z]{2,3}$")
    target_lang: str = _field("de", "Target language", _DATA, "ISO 639 code (two or three letters) of the target side.",
                              pattern=r"^[a-z]{2,3}$")
    target_langs: list[LanguageCode] | None = _field(
        None, "Several target languages", _DATA,
        "Fine-tune one model per pair source_lang → each of these, each with its own gate; publish only when "
        "every pair passes. Pair data is read from {data_uri}/{source}-{target}/ and published to "
        "{hub_repo_id}-{target}. Empty: the single pair source_lang → target_lang.")

    # --- validation: the thresholds of the pair filters (tasks/data/filters.py) and of the batch as a whole
    min_chars: int = _field(2, "Minimum characters per side", _VALIDATE,
                            "Shorter sides are rejected (too_short); a Han character counts 3, kana 1.5, a Hangul "
                            "syllable 2 ('是', yes, passes).", ge=0, le=10_000)
    max_chars: int = _field(1000, "Maximum characters per side", _VALIDATE,
                            "Longer sides are rejected as absurd (too_long).", ge=10, le=1_000_000)
    min_tokens: int = _field(1, "Minimum words per side", _VALIDATE,
                             "Whitespace-separated words; fewer is too_short.", ge=0, le=10_000)
    max_tokens: int = _field(250, "Maximum words per side", _VALIDATE,
                             "Whitespace-separated words; more is too_long.", ge=1, le=100_000)
    max_length_ratio: float = _field(
        3.0, "Maximum length ratio", _VALIDATE,
        "Pairs whose longer side has more than this many times the characters of the shorter side are "
        "rejected as misaligned (length_ratio); a Han character counts 3, kana 1.5, a Hangul syllable 2, as "
        "the letters they stand for; pairs whose longer side has at most 12 characters are exempt ('OK' → "
        "'In Ordnung').", ge=1.0, le=1000)
    langid_min_letters: int = _field(
        20, "Language ID from", _VALIDATE,
        "Language ID judges only sides with at least this many letters: on shorter text (menu labels, "
        "option names) it guesses too often to reject on.", ge=1, le=10_000)
    langid_min_confidence: float = _field(
        0.8, "Language ID confidence", _VALIDATE,
        "A side is in the wrong language when the model gives another language at least this probability "
        "(wrong_language). Software messages full of option names fool it up to about 0.7.", gt=0, le=1)
    skip_filters: list[FilterName] | None = _field(
        None, "Filters turned off", _VALIDATE,
        "Pair filters not to apply, e.g. markup for UI strings that legitimately carry HTML.")
    min_clean_pairs: int = _field(
        200, "Minimum usable pairs", _VALIDATE,
        "The run fails when fewer pairs than this survive validation.", ge=1, le=1_000_000_000)
    max_reject_rate: float = _field(
        0.5, "Maximum reject rate", _VALIDATE,
        "The run fails when a larger share of the rows is rejected by the pair filters or unreadable "
        "(duplicates and test-set leakage do not count: they say nothing about the data's quality).",
        gt=0, le=1)

    alignment_screen: bool = _field(
        True, "Alignment screen", _VALIDATE,
        "Score each new pair with the base model against sources of similar length, and reject a pair whose "
        "target is no likelier under its own source (misaligned): lines shifted by one, exports sorted by one "
        "column, rotated targets that every surface filter passes. Turn it off only for a base model that "
        "cannot translate this pair (an untrained one): then it cannot tell and fails the batch.")
    alignment_min_margin: float | None = _field(
        None, "Alignment threshold", _VALIDATE,
        "The margin a pair must exceed, in nats per target token: its target's log-probability under its own "
        "source minus the mean under similar-length others. Empty: calibrated on the batch itself, from "
        "pairings that are wrong by construction.", ge=-100, le=100)
    alignment_reverse_models: dict[LanguageCode, str] | None = _field(
        None, "Reverse models for the alignment screen", _VALIDATE,
        "Per target language, a model that translates it back into source_lang, e.g. {\"de\": "
        "\"Helsinki-NLP/opus-mt-de-en\"} (Hub id or local path): the screen then also scores each source given "
        "its target against other targets (dual conditional cross-entropy) and adds both margins. It catches more "
        "misaligned pairs and costs twice the scoring; a language not listed is screened one way.")
    max_misaligned_rate: float = _field(
        0.2, "Maximum misaligned share", _VALIDATE,
        "The run fails when a larger share of the screened new pairs is misaligned: such an export is broken "
        "(sorted, shifted), and what is left of it is not to be trusted either.", gt=0, le=1)

    # --- split
    test_fraction: float = _field(
        0.1, "Test share", _SPLIT,
        "Share of pairs hashed into the test split on the first run, which freezes the test set; later "
        "runs reuse it and feed new data only to train and validation.", gt=0, lt=0.5)
    validation_fraction: float = _field(0.05, "Validation share", _SPLIT,
                                        "Share of pairs hashed into the validation split.", gt=0, lt=0.5)
    min_test_pairs: int = _field(
        100, "Minimum test size", _SPLIT,
        "The first run fails rather than freeze a test set smaller than this (scores on a few sentences "
        "are noise).", ge=1, le=10_000_000)

    # --- training
    base_model: str = _field(
        "Helsinki-NLP/opus-mt-en-de", "Base model", _TRAIN,
        "Hugging Face Hub id or local path (under MT_LOCAL_DATA_ROOTS) of the seq2seq model to fine-tune.",
        min_length=1)
    target_base_models: dict[LanguageCode, str] | None = _field(
        None, "Base model per target language", _TRAIN,
        "With several target languages: the base model of each, e.g. {\"nl\": \"Helsinki-NLP/opus-mt-en-nl\"}; a "
        "language not listed fine-tunes base_model (a multilingual one such as NLLB takes its target-language "
        "token from the pair).")
    init_from: Literal["base", "champion"] = _field(
        "base", "Start from", _TRAIN,
        "base: fine-tune base_model afresh on the training data. champion: continue from the published model "
        "(falls back to base_model while there is none); cheaper when the corpus grows slowly, but it drifts "
        "further from the base model run after run, so pair it with replay and the general-domain check.")
    num_train_epochs: float = _field(3.0, "Epochs", _TRAIN, "Passes over the training split at most.", gt=0,
                                     le=1000)
    max_train_minutes: float | None = _field(
        None, "Training budget (minutes)", _TRAIN,
        "Stop training once this much time is spent in the training loop, validations and checkpoints included "
        "(retries too; loading, tokenizing and saving not), and keep the best model by validation loss so far. "
        "Empty: no budget, the epochs and steps decide.", gt=0, le=10_080)
    max_steps: int = _field(0, "Maximum steps", _TRAIN, "Stop after this many optimizer steps (0: no cap).",
                            ge=0, le=MAX_STEPS)
    learning_rate: float | None = _field(
        None, "Learning rate", _TRAIN,
        "Peak learning rate of AdamW, reached after warmup and decayed linearly to zero. Empty: automatic, "
        "following the batch: 1e-4 at 512 tokens per step (the CPU's batch), times the square root of the "
        "step's tokens over 512, at most 5e-4 (4.9e-4 at a GPU's 12,288 tokens). The seed recipe's 2e-5 is for "
        "16-sentence batches.", gt=0, le=1)
    weight_decay: float = _field(0.01, "Weight decay", _TRAIN, "AdamW weight decay.", ge=0, le=1)
    warmup_steps: float | None = _field(
        None, "Warmup", _TRAIN,
        "Linear warmup: a share of all steps if below 1, else a number of steps. Empty: automatic, following the "
        "peak learning rate: 5 % of the steps at 1e-4 or less, 8 % more per 1e-4 above it, at most 40 % (36 % at "
        "a GPU's 4.9e-4: post-norm models such as opus-mt trained from scratch at such rates with a short warmup "
        "learn to ignore their source).", ge=0, le=MAX_STEPS)
    max_tokens_per_batch: int = _field(
        0, "Tokens per batch", _TRAIN,
        "Token budget of one optimizer batch per device (padded source or target tokens × sentences); "
        "pairs of similar length are batched together, so little of it is padding. 0: automatic, 12288 "
        "per GPU and 512 on CPU (where smaller batches cost no speed and give more updates per token).",
        ge=0, le=1_000_000)
    early_stopping_patience: int = _field(
        3, "Early stopping patience", _TRAIN,
        "Stop after this many validation evaluations without a lower loss (0: never stop early). The best "
        "model by validation loss is kept, not the last.", ge=0, le=1000)
    eval_every_steps: int = _field(0, "Validate every", _TRAIN,
                                   "Steps between validation-loss evaluations (0: once per epoch).", ge=0,
                                   le=MAX_STEPS)
    checkpoint_every_steps: int = _field(
        200, "Checkpoint every", _TRAIN,
        "Steps between checkpoints in the run directory; a retried train task resumes from the last one.",
        ge=1, le=MAX_STEPS)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = _field(
        "auto", "Precision", _TRAIN,
        "auto: bf16 on GPUs that support it, guarded fp16 on older GPUs, fp32 on CPUs (bf16 there only on request).")
    cuda_graphs: bool = _field(
        False, "CUDA graphs", _TRAIN,
        "On one CUDA GPU, record a training step once per batch shape and replay it, so the host no longer issues "
        "each of its thousands of operations (bf16 or fp32; fp16, several GPUs and CPUs train as before). Off "
        "until measured on a GPU: make bench-gpu compares both.")
    max_source_length: int = _field(128, "Max source tokens", _TRAIN,
                                    "Longer sources are truncated for training and decoding.", ge=8, le=4096)
    max_target_length: int = _field(128, "Max target tokens", _TRAIN,
                                    "Longer targets are truncated for training.", ge=8, le=4096)
    seed: int = _field(42, "Seed", _TRAIN, "Random seed for training.", ge=0, le=2**32 - 1)

    # --- against forgetting (tasks/data/replay.py, tasks/train/adaptation.py); keyword arguments keep title, section
    # and description apart whatever order _field takes them in.
    replay_data_uri: str | None = _field(
        None, "Replay data", section=_TRAIN, description=(
            "General-domain parallel data to rehearse while fine-tuning (a file, folder or S3 prefix, in the "
            "formats the fresh data may use), so the model does not forget what it translated well before. "
            "Pairs whose source is in the validation, test or general-domain test set are never replayed."))
    replay_fraction: float = _field(
        0.0, "Replay share", section=_TRAIN, description=(
            "Share of the training mix that is general-domain replay data: 0.2 adds one general pair for "
            "every four domain pairs. 0: no replay."), ge=0, le=0.9)
    adaptation: Literal["full", "lora", "freeze_embeddings", "freeze_encoder"] = _field(
        "full", "Weights to train", section=_TRAIN, description=(
            "full: all weights. lora: low-rank adapters on the attention (peft), merged into the weights before "
            "saving; usually wants a ~10x higher learning rate. freeze_embeddings / freeze_encoder: train all "
            "but the token embeddings / the encoder. Training fewer weights forgets less."))
    lora_r: int = _field(16, "LoRA rank", section=_TRAIN,
                         description="Rank of the LoRA adapters (adaptation = lora).", ge=1, le=1024)
    lora_alpha: float = _field(32.0, "LoRA alpha", section=_TRAIN,
                               description="LoRA scaling: adapters are scaled by alpha / rank.", gt=0, le=10_000)
    lora_dropout: float = _field(0.05, "LoRA dropout", section=_TRAIN,
                                 description="Dropout on the LoRA adapters' input.", ge=0, lt=1)
    lora_targets: Literal["qv", "attention", "all_linear"] = _field(
        "qv", "LoRA targets", section=_TRAIN, description=(
            "Layers that get adapters. qv: attention query and value projections; attention: all four "
            "attention projections; all_linear: those and the feed-forward layers."))
    learning_curve_fractions: list[Annotated[float, Field(gt=0, le=1)]] | None = _field(
        None, "Learning curve", section=_EVAL, description=(
            "Also train on these shares of the training split (e.g. [0.1, 0.25, 0.5]), one task each, and "
            "report BLEU against data size in learning_curve.md/.png in the run directory. Smaller shares are "
            "subsets of larger ones. The candidate is unaffected. At most 8 points: each is a training of its "
            "own, on the GPU. Empty: no learning curve."), max_length=8)

    # --- evaluation and gate
    num_beams: int = _field(4, "Beam size", _EVAL,
                            "Beam size used for every model scored (base, candidate, champion).", ge=1, le=64)
    decode_engine: Literal["auto", "ctranslate2", "transformers"] = _field(
        "auto", "Decoding engine", _EVAL,
        "auto: CTranslate2 (fp32 on CPU, bf16/fp16 on GPU) for models it converts faithfully, else "
        "transformers generate (bf16 on GPU). Every model of a run is decoded by the same engine.")
    eval_batch_size: int = _field(256, "Decoding batch sentences", _EVAL,
                                  "At most this many sentences per decoding batch (sorted by length).", ge=1,
                                  le=65_536)
    eval_max_tokens_per_batch: int = _field(
        16384, "Decoding batch tokens", _EVAL,
        "Token budget of one decoding batch: sentences × longest source, in tokens. Sentences of similar "
        "length are batched together.", ge=64, le=10_000_000)
    max_decode_length: int = _field(256, "Max output tokens", _EVAL,
                                    "Hard cap on the tokens generated for one sentence.", ge=8, le=4096)
    decode_length_ratio: float = _field(
        2.0, "Output length ratio", _EVAL,
        "A batch generates at most ratio × (its longest source in tokens) + offset tokens (and never more "
        "than the cap), so a degenerate output stops early instead of running to the cap.", gt=0, le=100)
    decode_length_offset: int = _field(10, "Output length offset", _EVAL,
                                       "The offset of the output length limit above.", ge=0, le=4096)
    min_test_sentences: int = _field(
        100, "Minimum test sentences", _EVAL,
        "Refuse to decide on fewer test sentences than this: small test sets make BLEU differences noise.",
        ge=1, le=10_000_000)
    min_bleu_gain: float = _field(
        1.0, "Minimum BLEU gain", _EVAL,
        "The candidate is published only if its BLEU on the test split beats the base model by this much.",
        ge=-100, le=100)
    alpha: float = _field(
        0.05, "Significance level", _EVAL,
        "The gain over the base model must be significant: paired bootstrap p-value (sacrebleu, 1000 "
        "resamples, fixed seed) below this.", gt=0, le=1)
    max_champion_regression: float = _field(
        0.5, "Allowed loss against the champion", _EVAL,
        "The candidate may score at most this many BLEU below the model currently published to the "
        "Hub repository (the champion). No champion yet: the check passes.", ge=0, le=100)
    require_beat_champion: bool = _field(
        False, "Must beat the champion", _EVAL,
        "Also require a BLEU gain over the champion that is significant at the level above.")
    min_bleu: float = _field(0.0, "Minimum BLEU", _EVAL,
                             "Absolute floor: the candidate's BLEU on the domain test split.", ge=0, le=100)
    min_distinct_outputs: float = _field(
        0.5, "Minimum distinct outputs", _EVAL,
        "degenerate_outputs: the candidate's distinct test outputs per distinct test source must be at least "
        "this share (a model that answers everything with a few lines is refused, whatever its BLEU).",
        ge=0, le=1)
    max_empty_outputs: float = _field(
        0.05, "Maximum empty outputs", _EVAL, "degenerate_outputs: at most this share of empty test outputs.",
        ge=0, le=1)
    max_source_copies: float = _field(
        0.3, "Maximum copied sources", _EVAL,
        "degenerate_outputs: at most this share of test outputs equal to their source (left untranslated). "
        "Software messages have some legitimate ones: file names, options, placeholders.", ge=0, le=1)
    max_runaway_outputs: float = _field(
        0.1, "Maximum runaway outputs", _EVAL,
        "degenerate_outputs: at most this share of test outputs in which a run of one to four words repeats "
        "four or more times in a row, or, in scripts written without spaces, a run of one to four characters "
        "eight or more times (a model that loops until the length limit).", ge=0, le=1)
    max_general_regression: float = _field(
        1.0, "Allowed general-domain loss", _EVAL,
        "With a general-domain test set: the candidate may lose at most this many BLEU there against the "
        "base model (catastrophic forgetting).", ge=0, le=100)

    # --- publishing
    push_to_hub: bool = _field(True, "Publish", _PUBLISH,
                               "Publish a promoted candidate. Off: the run stops after the gate.")
    hub_repo_id: str = _field("my-org/opus-mt-en-de-domain", "Hub repository", _PUBLISH,
                              "Model repository (namespace/name) that receives the promoted model.")
    hub_conn_id: str = _field("huggingface_default", "Hub connection", _PUBLISH,
                              "Airflow connection whose password is the Hub token (else HF_TOKEN is used). "
                              "Its extra may set {\"endpoint\": ...} for a private Hub. Only the connections "
                              "the deployment lists in MT_HUB_CONN_IDS (default: huggingface_default).",
                              min_length=1)
    model_license: str = _field("cc-by-4.0", "License", _PUBLISH,
                                "License of the published model, as the Hub names licenses (lower case, e.g. "
                                "cc-by-4.0, apache-2.0; other for one it does not list). The base model's terms "
                                "carry over: opus-mt models are cc-by-4.0.", min_length=1)
    hub_private: bool = _field(True, "Private repository", _PUBLISH,
                               "Create the repository as private if it does not exist yet.")
    create_pr: bool = _field(
        False, "Review before release", _PUBLISH,
        "Open a pull request on the Hub repository instead of pushing to main. The PR's URL is in the "
        "publish task's log, its XCom and its extra link; the model becomes the champion once merged.")
    publish_target: Literal["hub", "local"] = _field(
        "hub", "Publish to", _PUBLISH,
        "hub: the Hugging Face Hub (HF_ENDPOINT or the connection's endpoint picks a private hub). "
        "local: a registry folder or S3 prefix (registry_uri) with the same layout, for air-gapped sites.")
    registry_uri: str | None = _field(
        None, "Local registry", _PUBLISH,
        "Folder or s3://bucket/prefix of the local registry; used when publish_target is local. Each "
        "published run is kept side by side under {registry_uri}/{hub_repo_id}/versions/.")

    # --- runtime
    launcher: Literal["local", "docker", "kubernetes"] = _field(
        "local", "Launcher", _RUNTIME,
        "Where training and evaluation run: a subprocess on the worker, a Docker container or a "
        "Kubernetes pod, each with GPUs when the launcher provides them.")

    @model_validator(mode="after")
    def _check_pair(self) -> "PipelineParams":
        if self.source_lang == self.target_lang:
            raise ValueError(f"source_lang and target_lang are both {self.source_lang!r}")
        if self.source_lang in self.target_langs or len(set(self.target_langs)) != len(self.target_langs):
            raise ValueError(f"target_langs {self.target_langs} repeats a language or holds source_lang")
        if self.test_fraction + self.validation_fraction >= 0.9:
            raise ValueError("test_fraction + validation_fraction leaves less than 10% for training")
        if self.publish_target == "local" and not self.registry_uri:
            raise ValueError("publish_target 'local' needs registry_uri (a folder or s3://bucket/prefix)")
        if self.publish_target == "local" and self.create_pr:
            raise ValueError("create_pr needs publish_target 'hub': a local registry has no pull requests")
        return self

    @field_validator("data_snapshot", "retract_data", "target_langs", "skip_filters", "learning_curve_fractions",
                     mode="after")
    @classmethod
    def _none_is_empty(cls, values: list | None) -> list:
        # The form leaves an optional list null; everything downstream reads an empty list.
        return [] if values is None else values

    @field_validator("general_eval_uri", "replay_data_uri", "registry_uri", mode="after")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator(*LOCATIONS, mode="after")
    @classmethod
    def _allowed_place(cls, value: str | list[str] | None) -> str | list[str] | None:
        for uri in value if isinstance(value, list) else [value] if value else []:
            locations.check(uri)
        return value

    @field_validator("base_model", mode="after")
    @classmethod
    def _allowed_model(cls, value: str) -> str:
        return locations.check_model(value)

    @field_validator("target_base_models", "alignment_reverse_models", mode="after")
    @classmethod
    def _allowed_models(cls, value: dict[str, str] | None) -> dict[str, str]:
        return {lang: locations.check_model(model) for lang, model in (value or {}).items()}

    @field_validator("hub_repo_id", mode="after")
    @classmethod
    def _hub_repo(cls, value: str) -> str:
        return locations.check_repo_id(value)

    @model_validator(mode="after")
    def _hub_license(self) -> "PipelineParams":
        """Only where the card goes to the Hub: a local registry's card may name any license."""
        value = self.model_license
        if self.publish_target == "hub" and value not in HUB_LICENSES:
            near = [name for name in HUB_LICENSES if name == value.strip().lower()]
            raise ValueError(f"model_license {value!r} is not a license id the Hub accepts in a model card"
                             + (f" (did you mean {near[0]!r}?)" if near else "; use 'other' for a license it does not "
                                                                             "list"))
        return self

    @model_validator(mode="after")
    def _entries_under_data_uri(self) -> "PipelineParams":
        prefix = self.data_uri.rstrip("/") + "/"
        for name in ("data_snapshot", "retract_data"):
            outside = [uri for uri in getattr(self, name) if not uri.startswith(prefix)]
            if outside:
                raise ValueError(f"{name} entries must lie under data_uri {self.data_uri}: {outside[:3]}")
        if self.target_langs:
            self._entries_in_language_folders()
        if extra := sorted(set(self.target_base_models) - set(self.target_langs)):
            raise ValueError(f"target_base_models names languages that are not in target_langs: {extra}")
        if extra := sorted(set(self.alignment_reverse_models) - {self.target_lang, *self.target_langs}):
            raise ValueError(f"alignment_reverse_models names languages that are not target languages: {extra}")
        return self

    def _entries_in_language_folders(self) -> None:
        """With target_langs each language reads its own folder, so an entry must lie in one of them, or be a folder
        above them (it then stands for each of them): one elsewhere would silently apply to none. And a snapshot must
        name something of every language, as a language without entries would run as usual, pulling what is new."""
        folders = {t: pair_data_uri(self.data_uri, self.source_lang, t) for t in self.target_langs}
        for name in ("data_snapshot", "retract_data"):
            if stray := [uri for uri in getattr(self, name) if not any(entries_of([uri], f) for f in folders.values())]:
                raise ValueError(f"with target_langs, {name} entries must lie in a language's folder "
                                 f"({{data_uri}}/{self.source_lang}-<target>/) or be a folder above them: {stray[:3]}")
        if self.data_snapshot and (missing := [t for t, f in folders.items() if not entries_of(self.data_snapshot, f)]):
            raise ValueError(f"data_snapshot names nothing of target language(s) {missing}, which would pull what is new "
                             "instead of reproducing: list their objects, or leave them out of target_langs")

    @field_validator("max_tokens_per_batch")
    @classmethod
    def _auto_or_enough(cls, tokens: int) -> int:
        if 0 < tokens < 256:
            raise ValueError(f"max_tokens_per_batch must be 0 (automatic) or at least 256, not {tokens}")
        return tokens

    @model_validator(mode="after")
    def _check_forgetting_options(self) -> "PipelineParams":
        if self.replay_fraction > 0 and not self.replay_data_uri:
            raise ValueError("replay_fraction > 0 needs replay_data_uri (general-domain pairs to replay)")
        return self

    @field_validator("learning_curve_fractions", mode="after")
    @classmethod
    def _distinct_ascending(cls, fractions: list[float] | None) -> list[float]:
        return sorted(set(fractions or []))


class RunConfig(PipelineParams):
    """PipelineParams plus the identity of the run that owns a run directory.

    `state_dir` holds what carries over from run to run of one pipeline: the objects consumed so far and
    the frozen test set. A pipeline is a DAG fed from one data URI for one language pair, so one DAG
    triggered for several domains or pairs keeps their histories apart.
    """

    dag_id: str
    run_id: str
    run_dir: str
    state_dir: str
    # For one language pair of a run with several target languages (plugins/mt_airflow/pairs.py): how many the run
    # has. A language with no data yet then has nothing new instead of failing them all (tasks/data/pull.py).
    languages_in_run: int = 1

    def uri(self, *parts: str) -> str:
        return storage.join(self.run_dir, *parts)

    def state_uri(self, *parts: str) -> str:
        return storage.join(self.state_dir, *parts)


def state_dir_for(artifact_root: str, dag_id: str, data_uri: str, source_lang: str, target_lang: str) -> str:
    """`{artifact_root}/{dag_id}/state/{src}-{tgt}-{hash of the data URI}`."""
    return storage.join(artifact_root, dag_id, "state", _state_name(data_uri, source_lang, target_lang))


def _state_name(data_uri: str, source_lang: str, target_lang: str) -> str:
    source = hashlib.blake2b(data_uri.rstrip("/").encode(), digest_size=5).hexdigest()
    return f"{source_lang}-{target_lang}-{source}"


def sub_run(config: RunConfig, name: str, **changes: Any) -> RunConfig:
    """A run of its own below `config.run_dir/name` (one language pair of a multi-pair run), with its own
    pipeline state when the changes give it another data URI or language pair."""
    merged = {**config.model_dump(), **changes, "run_dir": storage.join(config.run_dir, name)}
    states = config.state_dir.rstrip("/").rsplit("/", 1)[0]
    merged["state_dir"] = storage.join(states, _state_name(merged["data_uri"], merged["source_lang"],
                                                           merged["target_lang"]))
    return RunConfig(**merged)


def param_specs() -> dict[str, dict[str, Any]]:
    """JSON schema of each PipelineParams field, ready for `airflow.sdk.Param(**spec)`.

    Airflow's trigger form reads a Param as optional when its `type` admits null, and it does not read
    `anyOf`: pydantic's `anyOf: [X, {type: null}]` for an optional field becomes X with `type: [X's type, null]`.
    Params that name a place get a `format` that says in words which places the deployment allows (checked by
    `param_formats`' regular expressions once registered), so the form and the REST API refuse a place the
    deployment does not allow before a run exists, and say why in words.
    """
    schema = PipelineParams.model_json_schema()
    specs = {}
    for name, prop in schema["properties"].items():
        spec = {k: v for k, v in prop.items() if k not in ("default", "anyOf")}
        options = [o for o in prop.get("anyOf", []) if o.get("type") != "null"]
        if options:
            (only,) = options
            spec.update({**only, "type": [only["type"], "null"]})
        if name in _SCHEMA_FORMATS:
            words = {"format": _SCHEMA_FORMATS[name]()[0]}
            if spec.get("items"):
                spec["items"] = {**spec["items"], **words}
            else:
                spec.update(words)
        specs[name] = {"default": prop["default"], **spec}
    return specs


def param_formats() -> dict[str, str]:
    """The words of each place format `param_specs` names, with the regular expression that checks it."""
    return dict(make() for make in _SCHEMA_FORMATS.values())


def _explain(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        # A check of several fields at once has no location: its input is the whole config, which its message names.
        got = f" (got {e.get('input')!r})" if e["loc"] else ""
        lines.append(f"  - {'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}{got}")
    return "invalid run configuration:\n" + "\n".join(lines)


def _as_list(value) -> list[str]:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def build(params: dict[str, Any], *, dag_id: str, run_id: str, artifact_root: str) -> RunConfig:
    """Validate the trigger's params and place the run under `{artifact_root}/{dag_id}/{run_id}/`."""
    known = {k: v for k, v in params.items() if k in PipelineParams.model_fields}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ConfigError(f"invalid run configuration: unknown parameter(s) {unknown}")
    run_dir = storage.join(artifact_root, dag_id, storage.safe_name(run_id))
    try:
        params = PipelineParams(**known)
    except ValidationError as err:
        raise ConfigError(_explain(err)) from None
    clashes = [f"  - {name}: {value!r}: {why}" for name in LOCATIONS
               for value in _as_list(getattr(params, name)) if (why := locations.overlap(value, artifact_root))]
    if params.publish_target == "local" and params.registry_uri:
        clashes += [f"  - registry_uri: {params.registry_uri!r}: {why}" for name in READ_AS_DATA
                    for value in _as_list(getattr(params, name))
                    if (why := locations.registry_overlap(params.registry_uri, name, value))]
    if clashes:
        raise ConfigError("invalid run configuration:\n" + "\n".join(clashes))
    state_dir = state_dir_for(artifact_root, dag_id, params.data_uri, params.source_lang, params.target_lang)
    return RunConfig(**params.model_dump(), dag_id=dag_id, run_id=run_id, run_dir=run_dir,
                     state_dir=state_dir)


def save(config: RunConfig) -> str:
    """Write config.json once; a retry finds the same file and keeps it (the run's config never changes)."""
    uri = config.uri(layout.CONFIG)
    if storage.exists(uri):
        stored = load(config.run_dir)
        if stored.run_id != config.run_id:  # ids that differ only where a folder name cannot hold them
            raise ConfigError(f"{uri} belongs to run {stored.run_id!r}, whose id names the same folder as "
                              f"{config.run_id!r}: trigger this run again under another run id")
        if stored != config:
            raise ConfigError(f"{uri} already holds a different configuration for run {config.run_id}")
        return uri
    storage.write_json(uri, config.model_dump(mode="json"))
    return uri


def load(run_dir: str) -> RunConfig:
    uri = storage.join(run_dir, layout.CONFIG)
    try:
        return RunConfig(**storage.read_json(uri))
    except ValidationError as err:
        raise ConfigError(f"{uri}: " + _explain(err)) from None
