# The project image every pipeline component runs on (and the PyTorchJob replicas).
#   CPU:  docker build                         -t REGISTRY/hllm:0.1.0-cpu  .
#   CUDA: docker build --build-arg VARIANT=cuda -t REGISTRY/hllm:0.1.0-cuda .
# Then compile the pipeline for it: hllm pipeline compile --image REGISTRY/hllm:0.1.0-cuda --gpus-per-node 1
# Both variants install the set pinned in constraints.txt; they differ only in the base image and the torch build
# (CPU: the pinned torch==2.13.0 from the CPU index; CUDA: a CUDA build, the constraints' CPU torch pin dropped).
ARG VARIANT=cpu

FROM python:3.11-slim AS base-cpu
ENV HLLM_TORCH_INDEX=https://download.pytorch.org/whl/cpu HLLM_TORCH_SPEC=torch==2.13.0 DS_ACCELERATOR=cpu

FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 AS base-cuda
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3-pip g++ \
    && rm -rf /var/lib/apt/lists/* && ln -sf /usr/bin/python3.11 /usr/local/bin/python
ENV HLLM_TORCH_INDEX=https://download.pytorch.org/whl/cu124 HLLM_TORCH_SPEC="torch>=2.4,<3"

FROM base-${VARIANT}
ENV PIP_NO_CACHE_DIR=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DO_NOT_TRACK=1 BENTOML_DO_NOT_TRACK=true \
    GX_ANALYTICS_ENABLED=false FEAST_USAGE=False HLLM_FEAST_HOME=/data/feast
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
COPY feature_repo ./feature_repo
COPY serving ./serving
# torch first (the variant's build), then every other package at the versions CI runs.
RUN python -m pip install --index-url "$HLLM_TORCH_INDEX" "$HLLM_TORCH_SPEC" \
    && grep -v '^torch==' constraints.txt > /tmp/constraints-no-torch.txt \
    && PIP_CONSTRAINT=/tmp/constraints-no-torch.txt python -m pip install ".[test]" "feast[redis,postgres]==0.67.0"
RUN useradd --uid 10001 --create-home hllm && mkdir -p /data && chown hllm /data
USER 10001
ENTRYPOINT ["hllm"]
