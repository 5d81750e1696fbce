"""The web app's job page shows a job's hyperparameter search beside its choice."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.db.tables import Job

SELECTION = {
    "metric": "balanced_accuracy",
    "protocol": "stratified 5-fold cross-validation",
    "candidates": [
        {"name": "frozen", "kind": "transfer", "mean": 0.68, "sd": 0.03, "folds": [0.68]},
        {"name": "tuned", "kind": "transfer", "mean": 0.71, "sd": 0.02, "folds": [0.71]},
    ],
    "winner": "tuned",
    "forced": False,
    "reason": "tuned scored the highest mean balanced accuracy.",
    "warnings": [],
    "tuning": {
        "trials": 12,
        "timeout_s": 900.0,
        "seed": 3,
        "complete": 8,
        "pruned": 3,
        "failed": 1,
        "best_value": 0.7009,
        "best_params": {"strategy": "full", "lr": 0.00294, "head_width": 128},
        "spread": {"min": 0.6505, "median": 0.6668, "max": 0.7009},
        "protocol": "Optuna",
    },
}


def test_a_job_page_shows_the_search_behind_tuned(client: TestClient, engine: Engine) -> None:
    with Session(engine) as s:
        job = Job(
            status="succeeded",
            params={"output_name": "out", "task": "classification", "label_column": "y",
                    "strategy": "auto", "encoder": {"name": "toy-encoder", "version": 1},
                    "hyperparameters": {"epochs": 6}},
            history=[{"status": "succeeded", "at": datetime.now(UTC).isoformat(), "reason": None}],
            progress=1.0, epoch=6, metrics={"selection": SELECTION},
            attempts=1, cancel_requested=False, tenant="default",
        )  # fmt: skip
        s.add(job)
        s.commit()
        job_id = job.id
    page = client.get(f"/ui/parts/jobs/{job_id}").text
    assert (
        "8 trials complete and 3 pruned (1 failed) of 12 (at most 900 s), seed 3; best 0.701"
        in page
    )
    assert "0.65 (min), 0.667 (median), 0.701 (max)" in page
    assert "Best settings: strategy full, lr 0.00294, head_width 128." in page


def test_a_models_page_shows_the_search_from_its_card() -> None:
    """A model's page renders the card's Selection object, not the job's JSON copy."""
    from app.ui.templating import templates
    from contract.card import Selection

    page = templates.env.get_template("parts/selection.html").render(
        sel=Selection.model_validate(SELECTION)
    )
    assert "8 trials complete and 3 pruned (1 failed) of 12 (at most 900 s)" in page
    assert "Best settings: strategy full, lr 0.00294, head_width 128." in page
