# syntax=docker/dockerfile:1
#
# GeneXfer training image: the `genexfer` CLI with the `train` extra (torch, scanpy, onnx, ...) and
# onnxruntime; it runs the fine-tuning workers and `docker compose run train`.
#
#   docker compose --profile train build train
#   docker compose run --rm train train demo --models-dir /models
#
# torch from PyPI is the CUDA build and carries its CUDA libraries as wheels, so a slim Python base
# is enough: on a host with the NVIDIA Container Toolkit (and a driver recent enough for that
# torch's CUDA, >= 580 for CUDA 13) it trains on the GPU, elsewhere on the CPU.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY training ./training
COPY contract ./contract
# train: torch and the export tools; cpu: onnxruntime, which every export checks its graph with
# (the CPU build suffices there: the GPU trains through torch). A job runs app.jobs.train, so the
# image must import it.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install ".[train,cpu]" \
    && /opt/venv/bin/python -c "import onnxruntime, torch, app.jobs.train, training.cli.demo"

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GENEXFER_MODELS_DIR=/models \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# The same uid/gid as the api image, so both can write to the shared models volume.
RUN groupadd --system --gid 10001 genexfer \
    && useradd --system --uid 10001 --gid genexfer --create-home --shell /usr/sbin/nologin genexfer \
    && install -d -o genexfer -g genexfer /models /data

COPY --from=build /opt/venv /opt/venv

WORKDIR /home/genexfer
USER 10001:10001
ENTRYPOINT ["genexfer"]
CMD ["train", "--help"]
