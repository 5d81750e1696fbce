"""The training image's install, rebuilt outside Docker: a fresh venv with exactly the extras
docker/train.Dockerfile installs, then the job runner's import and a tiny fine-tuning job in it.

The packages come from pip's configured sources (the machine's local wheel cache and package
index mirror first), as `make test` installs them; nothing of the development venv leaks in.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import ENCODER, REPO
from tests.test_deploy import TRAIN_DOCKERFILE, copies, pip_installs

pytestmark = pytest.mark.slow  # installs torch and the training stack into a new venv

JOB = r"""
import json, sys, uuid
from pathlib import Path

import onnxruntime  # every export is checked with it
import app.jobs.train as runner  # what a worker imports to run a job
from app.codecs.datasets import save_npz
from app.schemas.jobs import JobCreate
from app.services.datasets import parse_upload

root, examples = Path(sys.argv[1]), Path(sys.argv[2])
parsed, _ = parse_upload(  # as POST /v1/datasets reads an upload
    data=(examples / "lab-cells.csv.gz").read_bytes(),
    filename="lab-cells.csv.gz",
    fmt=None,
    label_columns=None,
    labels=(examples / "lab-labels.csv").read_bytes(),
    labels_filename="lab-labels.csv",
    max_values=10**8,
)
save_npz(parsed, root / "lab.npz")
params = JobCreate(
    encoder={"name": "pbmc68k-encoder", "version": 1},
    dataset_id=uuid.uuid4(),
    label_column="cell_type",
    hyperparameters={"epochs": 2, "patience": 2},
    output_name="image-check",
).model_dump(mode="json")


class Hook:
    def batch(self) -> None: ...

    def epoch(self, description, epoch, max_epochs, train_loss, val_loss) -> None:
        print(f"epoch {epoch + 1}/{max_epochs} train {train_loss:.3f} val {val_loss:.3f}")


name, version, metrics = runner.run(
    uuid.uuid4(), params, path=str(root / "lab.npz"), models_dir=root / "models", hook=Hook()
)
print(json.dumps({"name": name, "version": version, "device": metrics["device"],
                  "onnxruntime": onnxruntime.__version__, "runner": runner.__file__}))
"""


def _extras() -> str:
    (install,) = pip_installs(TRAIN_DOCKERFILE)
    found = re.search(r'pip install "\.\[([a-z,]+)\]"', install)
    assert found, install
    return found.group(1)


def test_the_train_images_extras_install_and_run_a_job(tmp_path: Path) -> None:
    src = tmp_path / "src"  # what the image's build context copies, nothing else
    for sources, _ in copies(TRAIN_DOCKERFILE):
        for source in sources:
            path = REPO / source
            if path.is_dir():
                shutil.copytree(path, src / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                (src / source).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, src / source)
    # nothing of this checkout or the development venv: only what the fresh venv installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"{src}[{_extras()}]"],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
        check=False,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    (tmp_path / "job" / "models").mkdir(parents=True)
    shutil.copytree(REPO / "models" / ENCODER, tmp_path / "job" / "models" / ENCODER)
    result = subprocess.run(
        [str(python), "-c", JOB, str(tmp_path / "job"), str(REPO / "examples")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # not the repository: the venv's own install is imported
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    done = json.loads(result.stdout.splitlines()[-1])
    assert (done["name"], done["version"]) == ("image-check", 1)
    assert done["runner"].startswith(str(venv))
    assert done["device"] in ("cpu", "cuda")
    assert (tmp_path / "job" / "models" / "image-check" / "1" / "model.onnx").is_file()
