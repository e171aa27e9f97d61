"""The publish task as an operator, so it can carry an extra link to the published revision or pull request.

`PublishModelOperator.execute` only adapts `tasks.publish.step.run` to Airflow: the Hub token comes from the
connection through `HuggingFaceHubHook` (masked in logs), a refused gate becomes a skip, and a token without
write access, or a registry that moved since the gate's champion lookup, fails the task without Airflow
retries, because a retry cannot fix it.

The link is declared on the operator. When the task ends, the worker calls `get_link` and stores the URL in
XCom under the link's key, and the API server shows it from there. It is not registered through an
AirflowPlugin: in Airflow 3 a plugin's link takes precedence on the API server, where `get_link` would have
to read the run directory or the Task SDK's XCom, neither of which is available there.
"""

from __future__ import annotations

from typing import Sequence

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException


class PublishedModelLink(BaseOperatorLink):
    """The published commit, or the pull request that waits for review."""

    name = "Published model"

    def get_link(self, operator: BaseOperator, *, ti_key) -> str:
        from tasks import config
        from tasks.publish import step as publish

        run_dir = getattr(operator, "run_dir", None)
        if not isinstance(run_dir, str):  # not rendered: the task did not run
            return ""
        try:
            stored = publish.result(config.load(run_dir))
        except FileNotFoundError:
            return ""
        return (stored or {}).get("url") or ""


class PublishModelOperator(BaseOperator):
    """Publish a promoted run (tasks/publish/step.py) and return publish.json's record: url, revision, tag, pr_url."""

    template_fields: Sequence[str] = ("run_dir",)
    operator_extra_links = (PublishedModelLink(),)
    ui_color = "#fdebd0"

    def __init__(self, *, run_dir: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_dir = run_dir

    def execute(self, context) -> dict:
        from mt_airflow.hub import registry_credentials
        from tasks import config
        from tasks.evaluate.gate import UnverifiedDecision
        from tasks.publish import step as publish
        from tasks.publish.hub_registry import HubAccessError
        from tasks.publish.modelcard import CardError
        from tasks.publish.registry import RegistryMovedError

        cfg = config.load(self.run_dir)
        credentials = registry_credentials(cfg)
        try:
            outcome = publish.run(cfg, token=credentials.token, endpoint=credentials.endpoint)
        except HubAccessError as err:
            raise AirflowFailException(f"{err} The token came from {credentials.source}.") from None
        except (RegistryMovedError, UnverifiedDecision, publish.UnverifiedModel, CardError) as err:
            # What a retry meets again (a decision or model that does not verify, a card the Hub would refuse):
            # fail at once, not after three retries with backoff.
            raise AirflowFailException(f"{type(err).__name__}: {err}") from None
        if not outcome["published"]:
            raise AirflowSkipException(outcome["reason"])
        if outcome.get("pr_url"):
            self.log.info("Review the release in pull request %s", outcome["pr_url"])
        return outcome
