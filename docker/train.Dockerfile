# Training and evaluation image: `python -m tasks <step> --run-dir URI`, nothing from Airflow.
#   docker build -f docker/train.Dockerfile -t REGISTRY/mt-retrain-train:TAG .
#   docker push REGISTRY/mt-retrain-train:TAG        # then set MT_TRAIN_IMAGE=REGISTRY/mt-retrain-train:TAG
# The base already holds CUDA, cuDNN, NCCL and a CUDA build of torch; keep its torch version close to the one
# pinned in requirements.txt so that local and container runs behave alike.
ARG BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HOME=/home/mt/.cache/huggingface \
    TOKENIZERS_PARALLELISM=false

COPY requirements-train.txt /tmp/requirements-train.txt
RUN pip install --no-cache-dir -r /tmp/requirements-train.txt && rm /tmp/requirements-train.txt

RUN useradd --create-home --uid 10001 mt
WORKDIR /app
COPY --chown=mt:mt tasks/ /app/tasks/
USER 10001

ENTRYPOINT ["python", "-m", "tasks"]
CMD ["--help"]
