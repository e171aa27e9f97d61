# Orchestration image: the Airflow API server, scheduler, DAG processor, triggerer and workers.
#   docker build -f docker/airflow.Dockerfile -t REGISTRY/mt-retrain-airflow:TAG .
# The official image brings Airflow itself; this adds the providers, the tasks/ engine (CPU torch: the GPU
# work runs in the training image), the DAGs and the plugins.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

USER root
# tcmalloc, which `python -m tasks` preloads (the local launcher's steps run here, on CPU): tasks/hardware.py.
RUN apt-get update && apt-get install -y --no-install-recommends libtcmalloc-minimal4 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt requirements-train.txt /opt/mt/
USER airflow
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir -r /opt/mt/requirements.txt

COPY --chown=airflow:root tasks/ /opt/mt/tasks/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
ENV PYTHONPATH=/opt/mt:/opt/airflow/plugins \
    HF_HUB_DISABLE_TELEMETRY=1
