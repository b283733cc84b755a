# The project image every pipeline component runs on (and the PyTorchJob replicas).
#   CPU:  docker build --target cpu  -t REGISTRY/hllm:0.1.0-cpu  .
#   CUDA: docker build --target cuda -t REGISTRY/hllm:0.1.0-cuda .
# Then compile the pipeline for it: hllm pipeline compile --image REGISTRY/hllm:0.1.0-cuda --gpus-per-node 1
# The CPU target installs exactly the set pinned in constraints.txt; the CUDA target brings a CUDA torch build
# first and then the same set without the CPU torch pin.

FROM python:3.11-slim AS base-cpu
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS base-cuda
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip g++ \
    && rm -rf /var/lib/apt/lists/* && ln -sf /usr/bin/python3.11 /usr/local/bin/python

FROM base-cpu AS cpu
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 BENTOML_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false FEAST_USAGE=False DS_ACCELERATOR=cpu HLLM_FEAST_HOME=/data/feast
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY feature_repo ./feature_repo
COPY serving ./serving
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && PIP_CONSTRAINT=constraints.txt pip install ".[test]" "feast[redis,postgres]==0.67.0"
RUN useradd --uid 10001 --create-home hllm && mkdir -p /data && chown hllm /data
USER 10001
ENTRYPOINT ["hllm"]

FROM base-cuda AS cuda
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 BENTOML_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false FEAST_USAGE=False HLLM_FEAST_HOME=/data/feast
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY feature_repo ./feature_repo
COPY serving ./serving
# CUDA torch first; the constraints minus their CPU torch pin keep every other version identical to CI.
RUN python -m pip install --index-url https://download.pytorch.org/whl/cu124 "torch>=2.4,<3" \
    && grep -v '^torch==' constraints.txt > /tmp/constraints-gpu.txt \
    && PIP_CONSTRAINT=/tmp/constraints-gpu.txt python -m pip install ".[test]" "feast[redis,postgres]==0.67.0"
RUN useradd --uid 10001 --create-home hllm && mkdir -p /data && chown hllm /data
USER 10001
ENTRYPOINT ["hllm"]
