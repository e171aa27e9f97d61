# Training and evaluation image: `python -m tasks <step> --run-dir URI`, nothing from Airflow.
#   docker build -f docker/train.Dockerfile -t REGISTRY/mt-retrain-train:TAG .
#   docker push REGISTRY/mt-retrain-train:TAG        # then set MT_TRAIN_IMAGE=REGISTRY/mt-retrain-train:TAG
# The base already holds CUDA, cuDNN, NCCL and a CUDA build of torch. Its torch (2.9.1) is older than the
# 2.13.0 that requirements.txt pins for workers and CI: no 2.13 CUDA 12 base could be pulled or checked from
# where this was written, and CTranslate2 4.8 needs CUDA 12's cuBLAS. Everything tasks/ calls exists in 2.9
# (README, "Training images"). To move, pass a checked tag: --build-arg BASE_IMAGE=pytorch/pytorch:<2.13 tag>.
ARG BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HOME=/home/mt/.cache/huggingface \
    HF_HUB_CACHE=/cache/hf-hub \
    TOKENIZERS_PARALLELISM=false

# tcmalloc, which `python -m tasks` preloads: glibc's malloc hands large freed blocks back to the kernel and
# every step faults them in again (tasks/hardware.py).
RUN apt-get update && apt-get install -y --no-install-recommends libtcmalloc-minimal4 \
    && rm -rf /var/lib/apt/lists/*
COPY requirements-train.txt /tmp/requirements-train.txt
RUN pip install --no-cache-dir -r /tmp/requirements-train.txt && rm /tmp/requirements-train.txt
# CTranslate2 dlopens libcublas.so.12 by name; where torch brought cuBLAS as a pip package, that folder is on
# no loader path. Register it when it exists. Without it, evaluation still runs (transformers), more slowly.
RUN python -c "import nvidia.cublas, pathlib; print(pathlib.Path(list(nvidia.cublas.__path__)[0], 'lib'))" \
        > /etc/ld.so.conf.d/nvidia-cublas.conf 2>/dev/null && ldconfig \
    || (rm -f /etc/ld.so.conf.d/nvidia-cublas.conf; echo "no pip cuBLAS: using the system loader path")

# The user the launchers expect (IMAGE_UID in plugins/mt_airflow/launcher.py), and the Hub cache (HF_HUB_CACHE),
# where they mount the shared cache of Hub models (MODEL_CACHE_PATH): a new Docker volume starts as a copy of this
# folder, owner and any model baked in here included; a Kubernetes claim mounted there hides what the image holds.
RUN useradd --create-home --uid 10001 mt && mkdir -p /cache/hf-hub && chown mt:mt /cache/hf-hub
WORKDIR /app
COPY --chown=mt:mt tasks/ /app/tasks/
USER 10001

ENTRYPOINT ["python", "-m", "tasks"]
CMD ["--help"]
