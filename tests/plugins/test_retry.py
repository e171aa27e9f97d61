"""Retries for what a retry can fix: S3 and network hiccups go to Airflow's retries; a bad batch, a bad config or
a refused decision fails the task at once. Every S3-touching step of the DAG follows that policy."""

from __future__ import annotations

import pytest

from mt_airflow import launcher
from mt_airflow.retry import is_transient, transient_only
from support.corpora import digit_pairs, write_jsonl
from support.runs import make_run, put_raw


def _client_error(code: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")


@pytest.mark.parametrize("error, transient", [
    (_client_error("SlowDown"), True), (_client_error("InternalError"), True), (ConnectionResetError(), True),
    (TimeoutError(), True), (_client_error("AccessDenied"), False), (_client_error("NoSuchBucket"), False),
    (ValueError("min_clean_pairs"), False), (KeyError("translation"), False),
])
def test_which_errors_are_worth_a_retry(error, transient):
    assert is_transient(error) is transient


def test_a_transient_error_is_retried_and_any_other_fails_at_once():
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    def raising(error):
        @transient_only
        def step():
            raise error
        return step

    with pytest.raises(ConnectionResetError):
        raising(ConnectionResetError("reset by peer"))()
    with pytest.raises(AirflowFailException, match="ValueError: 3 clean pairs, at least 50 needed .*not retried"):
        raising(ValueError("3 clean pairs, at least 50 needed"))()
    with pytest.raises(AirflowSkipException):
        raising(AirflowSkipException("nothing new"))()


def test_a_validation_that_failed_on_its_data_is_not_retried(tmp_path):
    """validate stores its report even for a bad batch, then fails: the launcher sees the stored result and fails
    the task for good instead of screening the same bad data three more times."""
    from airflow.sdk.exceptions import AirflowFailException

    cfg = make_run(tmp_path / "artifacts", min_clean_pairs=1000)  # 20 pairs can never be enough
    put_raw(cfg, write_jsonl(tmp_path / "small.jsonl", digit_pairs(20, seed=1)))
    op = launcher.RunStepOperator(task_id="validate", step="validate", run_dir=cfg.run_dir)
    with pytest.raises(AirflowFailException, match="stored its result before failing, so it is not retried"):
        op.execute({})
