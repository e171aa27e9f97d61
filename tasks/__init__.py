"""The retraining engine, runnable without Airflow: `python -m tasks <step> --run-dir URI`.

One subpackage per stage of the pipeline, in the order a run goes through them:

    io/        storage (disk or S3), parallel-data formats and readers, the pipeline's own pair files
    data/      pull → validate → split (filters, language ID, the frozen test set, replay)
    train/     the train step, its loop, batching, loss, precision, adaptation, learning curves
    evaluate/  champion → evaluate → gate (decoding engines, sacrebleu scoring, the report)
    publish/   the model card and the release to the Hub or a local registry

`config.py` is the one typed run configuration, `layout.py` names every file of a run directory, and
`steps.py` is the table of steps that the command line and the launchers share.
"""
