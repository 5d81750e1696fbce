#!/usr/bin/env bash
# Build the peer servers' own virtual environments under .peers/ (git-ignored), never in the
# project's dependencies:
#   .peers/triton  Python 3.12 + nvidia-pytriton (Triton Inference Server in a wheel) + onnxruntime
#   .peers/kserve  kserve (its Python ModelServer) + onnxruntime
# Idempotent: a venv whose stamp exists is left alone. Usage: bash tests/perf/peers/setup.sh [triton|kserve]...
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=.peers
mkdir -p "$ROOT"
ORT_VERSION=$(${GENEXFER_PYTHON:-.venv/bin/python} -c 'import onnxruntime; print(onnxruntime.__version__)' 2>/dev/null || echo "")

python312() {
  # PyTriton's wheel bundles a tritonserver built against Python 3.12's libpython
  for candidate in python3.12 /usr/bin/python3.12 "$HOME/.pyenv/versions/"3.12*/bin/python3.12; do
    # a pyenv shim is on PATH even when its version is not selected: run it to be sure
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
      command -v "$candidate"; return
    fi
  done
  echo "python3.12 not found: install it (apt-get install python3.12-venv, or pyenv install 3.12)" >&2
  return 1
}

ort_spec() { if [ -n "$ORT_VERSION" ]; then echo "onnxruntime==$ORT_VERSION"; else echo onnxruntime; fi; }

build() {
  local name=$1 python=$2; shift 2
  local venv=$ROOT/$name
  if [ -f "$venv/.ok" ]; then echo "$venv: ready"; return; fi
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  # the same onnxruntime as the service when that version exists for this Python, else the newest
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" "$(ort_spec)" \
    || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" onnxruntime
  touch "$venv/.ok"
  echo "$venv: built"
}

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(triton kserve)
for t in "${targets[@]}"; do
  case $t in
    triton) build triton "$(python312)" nvidia-pytriton numpy ;;
    kserve) build kserve "$(python312)" kserve numpy ;;
    *) echo "unknown peer $t (triton, kserve)" >&2; exit 2 ;;
  esac
done
