"""Version folders under models/: numbering, atomic publication, lookup of existing versions.

A version is staged in ``models/<name>/.tmp-<uuid>`` and renamed to ``models/<name>/<int>`` only
when complete; the service ignores dot-folders, so it never sees a half-written version, and
renaming onto a non-empty folder fails, so a published version is never overwritten. A version
published for a service job names the job in its card, and `publish` keeps one version per job:
under a lock on the model's folder it looks for a version of that job first and, if one exists
(an earlier attempt of the job published it), discards the new one and returns that.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from contract.card import ONNX_FILE, ModelCard, ModelRef, sha256_file

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def check_model_name(name: str) -> str:
    """Return `name` if it is a valid model name (the card's pattern), else raise ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"model name {name!r} must be 1-64 characters of a-z, 0-9, '.', '_', '-', "
            "starting with a letter or digit"
        )
    return name


def existing_versions(name_dir: Path) -> list[int]:
    """Published version numbers in `models/<name>/`, ascending (dot-folders ignored)."""
    if not name_dir.is_dir():
        return []
    return sorted(int(p.name) for p in name_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(name_dir: Path) -> int:
    """One more than the highest published version, or 1."""
    versions = existing_versions(name_dir)
    return versions[-1] + 1 if versions else 1


@contextlib.contextmanager
def staging_folder(name_dir: Path) -> Iterator[Path]:
    """A fresh hidden folder beside the versions; removed afterwards unless it was published."""
    name_dir.mkdir(parents=True, exist_ok=True)
    staging = name_dir / f".tmp-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def publish(
    staging: Path,
    write_card: Callable[[int], None],
    attempts: int = 20,
    *,
    job: str | None = None,
) -> Path:
    """Rename a complete staging folder to the next free version number and return its path.

    Parameters
    ----------
    staging:
        Folder from `staging_folder`, holding every file except model.json.
    write_card:
        Called with the version number about to be claimed; writes model.json into `staging`.
        It may be called again with a higher number if another writer took the first.
    attempts:
        How many numbers to try before giving up.
    job:
        The service job publishing this version (its card names it): if a version of this job
        is already published, `staging` is removed and that version's folder returned.
    """
    if job is None:
        return _publish(staging, write_card, attempts)
    with _locked(staging.parent / ".publish.lock"):
        existing = job_version(staging.parent, job)
        if existing is not None:
            shutil.rmtree(staging)
            return existing
        return _publish(staging, write_card, attempts)


def job_version(name_dir: Path, job: str) -> Path | None:
    """The published version whose card names `job`, if any."""
    for version in existing_versions(name_dir):
        folder = name_dir / str(version)
        with contextlib.suppress(OSError, ValueError):  # a folder that is not a version
            if ModelCard.read(folder).job == job:
                return folder
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing) for publishers on this file system."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish(staging: Path, write_card: Callable[[int], None], attempts: int) -> Path:
    name_dir = staging.parent
    for _ in range(attempts):
        version = next_version(name_dir)
        write_card(version)
        _fsync_tree(staging)
        target = name_dir / str(version)
        if target.exists():
            continue
        try:
            os.rename(staging, target)
        except OSError:
            if target.exists():  # another writer published this number first
                continue
            raise
        _fsync_dir(name_dir)
        return target
    raise RuntimeError(f"could not claim a version number in {name_dir} after {attempts} tries")


def resolve_version(models_dir: Path, spec: str) -> Path:
    """The folder of ``NAME`` (latest version) or ``NAME:VERSION`` under `models_dir`."""
    name, _, version = spec.partition(":")
    name_dir = models_dir / check_model_name(name)
    versions = existing_versions(name_dir)
    if not versions:
        raise ValueError(f"no published versions of {name!r} in {models_dir}")
    if not version:
        return name_dir / str(versions[-1])
    if not version.isdigit() or int(version) not in versions:
        raise ValueError(f"{name!r} has no version {version!r}; have {versions}")
    return name_dir / str(int(version))


def model_ref(folder: Path) -> ModelRef:
    """A reference to a published version (for a child's ``parent``), checking its model.onnx."""
    card = ModelCard.read(folder)
    digest = sha256_file(folder / ONNX_FILE)
    if card.files.get(ONNX_FILE) != digest:
        raise ValueError(f"{folder}: {ONNX_FILE} does not match the sha256 in its model card")
    return ModelRef(name=card.name, version=card.version, sha256=digest)


def _fsync_tree(folder: Path) -> None:
    # a rename is only as durable as the data it points at
    for path in folder.iterdir():
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
