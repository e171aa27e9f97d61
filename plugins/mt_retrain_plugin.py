"""Register the workflow's Airflow extensions: the promotion-history page and the run-note listener.

The page is a FastAPI app mounted on the API server at /mt-history and listed in the UI's navigation
(Browse → Promotion history), where the UI shows it in a frame at /plugin/promotion-history.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mt_airflow import outcome
from mt_airflow.history_app import app as history_app
from mt_airflow.params import register_formats

register_formats()  # the API server validates a trigger's Params with them: refused places are named in words


class MtRetrainPlugin(AirflowPlugin):
    name = "mt_retrain"
    fastapi_apps = [{"app": history_app, "url_prefix": "/mt-history", "name": "Promotion history"}]
    external_views = [{"name": "Promotion history", "href": "mt-history/", "url_route": "promotion-history",
                       "destination": "nav", "category": "browse"}]
    listeners = [outcome]
