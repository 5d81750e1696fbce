#!/usr/bin/env bash
# The GPU run's environment: .peers/gpu, a venv holding onnxruntime-gpu (with the CUDA and cuDNN
# runtime wheels) that sees the project's .venv behind it (a .pth file), so `import onnxruntime`
# there is the GPU build and everything else (the project, torch, the test tools) is .venv's.
# Usage: bash tests/perf/gpu/setup.sh [PYTHON_OF_THE_PROJECT_VENV]
set -euo pipefail
cd "$(dirname "$0")/../../.."
BASE=${1:-.venv/bin/python}
VENV=.peers/gpu
if [ -f "$VENV/.ok" ]; then echo "$VENV: ready"; exit 0; fi
"$BASE" -c 'import app, torch' || { echo "bench-gpu: $BASE lacks the project or torch (make test installs both)"; exit 1; }
rm -rf "$VENV"
"$BASE" -m venv --without-pip "$VENV" 2>/dev/null || "$BASE" -m venv "$VENV"
"$VENV/bin/python" -m ensurepip --upgrade >/dev/null 2>&1 || true
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# onnxruntime-gpu's cuda/cudnn extras bring the CUDA 12 runtime and cuDNN 9 as wheels; without
# them the CUDA provider loads only where the host has those libraries installed
if ! "${PIP[@]}" "onnxruntime-gpu[cuda,cudnn]"; then
  echo "bench-gpu: onnxruntime-gpu[cuda,cudnn] did not install (no package index reachable?); trying the bare wheel"
  "${PIP[@]}" onnxruntime-gpu || { echo "bench-gpu: onnxruntime-gpu cannot be installed here; the run will say which providers it found"; }
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
BASE_SITE=$("$BASE" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# appended after the venv's own site-packages (its onnxruntime, the GPU build, comes first and
# shadows .venv's CPU one); addsitedir also runs .venv's .pth files (the project's editable install)
echo "import site; site.addsitedir('$BASE_SITE')" > "$SITE/zz-genexfer-venv.pth"
touch "$VENV/.ok"
echo "$VENV: built"
