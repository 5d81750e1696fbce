"""Publication keyed by the job: a version whose card names a job is never published twice,
even by two attempts of the job racing to publish."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

from contract.card import ModelCard
from tests.factories import GENES, LABELS, write_model
from training.export.store import job_version, publish


def _stage(name_dir: Path, job: str | None) -> tuple[Path, ModelCard]:
    """A staging folder holding a complete toy version (all but its card)."""
    source = write_model(root=name_dir.parent / ".src", name=name_dir.name, genes=GENES,
                         labels=LABELS, job=job)  # fmt: skip
    card = ModelCard.read(source)
    staging = name_dir / f".tmp-{threading.get_ident()}-{len(list(name_dir.glob('.tmp-*')))}"
    shutil.copytree(source, staging)
    (staging / "model.json").unlink()
    shutil.rmtree(source.parent.parent)
    return staging, card


def _card_writer(staging: Path, card: ModelCard) -> Callable[[int], None]:
    def write(version: int) -> None:
        card.model_copy(update={"version": version}).write(staging)

    return write


def test_a_job_publishes_one_version_and_other_publications_are_untouched(tmp_path: Path) -> None:
    name_dir = tmp_path / "models" / "lab-model"
    name_dir.mkdir(parents=True)
    staging, card = _stage(name_dir, "job-1")
    first = publish(staging, _card_writer(staging, card), job="job-1")
    assert first.name == "1"
    again, card = _stage(name_dir, "job-1")
    assert publish(again, _card_writer(again, card), job="job-1") == first
    assert not again.exists()  # the second attempt's files are discarded
    other, card = _stage(name_dir, "job-2")
    assert publish(other, _card_writer(other, card), job="job-2").name == "2"
    offline, card = _stage(name_dir, None)
    assert publish(offline, _card_writer(offline, card)).name == "3"  # no job: always new
    assert job_version(name_dir, "job-1") == first
    assert job_version(name_dir, "job-3") is None
    assert sorted(p.name for p in name_dir.iterdir() if not p.name.startswith(".")) == [
        "1",
        "2",
        "3",
    ]


def test_two_attempts_racing_publish_one_version(tmp_path: Path) -> None:
    name_dir = tmp_path / "models" / "lab-model"
    name_dir.mkdir(parents=True)
    staged = [_stage(name_dir, "job-1") for _ in range(4)]
    results: list[Path] = []
    barrier = threading.Barrier(len(staged))

    def attempt(staging: Path, card: ModelCard) -> None:
        barrier.wait()
        results.append(publish(staging, _card_writer(staging, card), job="job-1"))

    threads = [threading.Thread(target=attempt, args=s) for s in staged]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {p.name for p in results} == {"1"}
    assert [p.name for p in name_dir.iterdir() if not p.name.startswith(".")] == ["1"]
