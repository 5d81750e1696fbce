# syntax=docker/dockerfile:1
#
# GeneXfer API image: FastAPI + ONNX Runtime (CUDA), no torch.
#
#   docker build -f docker/api.Dockerfile -t genexfer-api .      (or: docker compose build api)
#
# CUDA and ONNX Runtime must agree on the CUDA major version. onnxruntime-gpu on PyPI is built
# against CUDA 13.0 + cuDNN 9 from 1.27 on (1.19-1.26 were CUDA 12), so the default pairs a
# CUDA 13.0 cuDNN runtime base with onnxruntime-gpu>=1.27. The host needs an NVIDIA driver
# >= 580 for CUDA 13. Hosts stuck on an older driver (>= 525) can build the CUDA 12 pairing:
#
#   docker build -f docker/api.Dockerfile \
#     --build-arg CUDA_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg ONNXRUNTIME_GPU='onnxruntime-gpu>=1.19,<1.27' -t genexfer-api .
#
# A mismatched pair fails the build (the ldd check below), instead of silently serving on CPU.
ARG CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04

# ---- base: the CUDA runtime plus Ubuntu 24.04's Python 3.12, shared by both stages so that the
# venv built below finds the very same interpreter at the very same path at run time.
FROM ${CUDA_IMAGE} AS base
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 \
    && rm -rf /var/lib/apt/lists/*

# ---- build: a venv with the project and its `gpu` extra; venv tooling and pip stay here.
FROM base AS build
ARG ONNXRUNTIME_GPU="onnxruntime-gpu>=1.27"
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3.12 -m venv /opt/venv
WORKDIR /src
# training/ comes along because `genexfer` registers its train commands from training.cli (argparse
# only); without the `train` extra they cannot run here, and torch is never installed.
COPY pyproject.toml README.md ./
COPY app ./app
COPY training ./training
COPY contract ./contract
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install "${ONNXRUNTIME_GPU}" ".[gpu]"
# Guard the no-torch rule, and that no CPU-only `onnxruntime` shadows onnxruntime-gpu (both install
# the same `onnxruntime` module). pip is removed afterwards: nothing at run time installs packages.
RUN /opt/venv/bin/python -c "import importlib.metadata as md, sys; \
bad = sorted({'torch', 'onnxruntime'} & {d.metadata['Name'].lower() for d in md.distributions()}); \
sys.exit(f'the api image must not contain {bad}' if bad else 0)" \
    && ! /opt/venv/bin/python -c "import torch" 2>/dev/null \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet pip

# ---- runtime
FROM base AS runtime
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GENEXFER_ENVIRONMENT=production \
    GENEXFER_MODELS_DIR=/models \
    GENEXFER_AUTO_MIGRATE=false

RUN groupadd --system --gid 10001 genexfer \
    && useradd --system --uid 10001 --gid genexfer --create-home --shell /usr/sbin/nologin genexfer

COPY --from=build /opt/venv /opt/venv

# The CUDA provider's libraries must resolve against this base; libcuda.so.1 is the host driver,
# mounted by the NVIDIA Container Toolkit at run time, so it is the one allowed to be missing here.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN set -eu; \
    lib="$(python -c 'import onnxruntime, pathlib; print(pathlib.Path(onnxruntime.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so")')"; \
    test -f "$lib"; \
    missing="$(ldd "$lib" | grep 'not found' | grep -v 'libcuda\.so\.1' || true)"; \
    if [ -n "$missing" ]; then \
        echo "CUDA libraries missing for onnxruntime-gpu (CUDA_IMAGE / ONNXRUNTIME_GPU mismatch?):" >&2; \
        echo "$missing" >&2; exit 1; \
    fi; \
    ldconfig -p | grep 'libcudnn\.so\.9' >/dev/null || { echo "cuDNN 9 missing from the base image" >&2; exit 1; }; \
    python -c "import onnxruntime as ort, sys; sys.exit(0 if 'CUDAExecutionProvider' in ort.get_available_providers() else 'no CUDA provider in onnxruntime')"

# The two demo models ship inside the image, outside the models volume; only they do (versions
# trained locally into models/ stay out: .dockerignore lets only these two folders through). On
# start, the entrypoint copies them into GENEXFER_MODELS_DIR only when that directory is empty (a
# fresh volume or bind mount), so a volume that already holds models, the lab's own or retrained
# ones, is never touched. Relying on Docker's copy-on-first-mount of /models instead would not
# work for bind mounts, nor when the train service happens to create the volume first.
COPY models/pbmc68k-encoder/1 /opt/genexfer/models-demo/pbmc68k-encoder/1
COPY models/pbmc68k-celltype/1 /opt/genexfer/models-demo/pbmc68k-celltype/1
COPY --chmod=0755 docker/entrypoint-api.sh /usr/local/bin/genexfer-entrypoint
RUN install -d -o genexfer -g genexfer /models /data

WORKDIR /home/genexfer
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["/usr/local/bin/genexfer-entrypoint"]
CMD ["genexfer", "serve", "--host", "0.0.0.0", "--port", "8000"]
