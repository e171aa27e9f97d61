"""The retraining engine: one module per pipeline step, runnable without Airflow (`python -m tasks`)."""
