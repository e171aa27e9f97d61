"""Retry what a retry can fix.

The steps that talk to S3 or the Hub retry with backoff (the DAG's IO_RETRIES). A retry helps when storage or
the network hiccuped; it cannot help a batch that failed validation, a config that does not parse or a decision
that does not verify, and three retries with backoff only delay the alert by minutes. `transient_only` lets the
first kind through to Airflow's retries and fails the task at once, with the same message, on anything else.
"""

from __future__ import annotations

import functools

# S3 error codes that mean "try again": throttling and the server's own failures.
RETRYABLE_S3_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                      "InternalError", "ServiceUnavailable", "503", "500", "502", "504"}


def is_transient(error: BaseException) -> bool:
    """Storage, network and concurrency errors a later attempt may not meet."""
    from botocore.exceptions import BotoCoreError, ClientError

    from tasks.io.storage import ConcurrentUpdateError

    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code")) in RETRYABLE_S3_CODES
    return isinstance(error, (OSError, TimeoutError, ConcurrentUpdateError, BotoCoreError))


def transient_only(step):
    """Wrap a task body: transient errors go to Airflow's retries, any other fails the task without retrying.
    Airflow's own exceptions (a skip, say) pass through untouched."""

    @functools.wraps(step)
    def run(*args, **kwargs):
        from airflow.exceptions import AirflowException
        from airflow.sdk.exceptions import AirflowFailException

        try:
            return step(*args, **kwargs)
        except Exception as error:
            if isinstance(error, AirflowException) or is_transient(error):
                raise
            raise AirflowFailException(f"{type(error).__name__}: {error} (not retried: a retry would fail the "
                                       "same way)") from error

    return run
