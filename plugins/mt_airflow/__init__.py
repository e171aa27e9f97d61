"""Airflow-side pieces of the retraining workflow: the step launcher, the Hub hook and the DAG's Params."""
