"""The audit log: who (key, tenant) created, changed or deleted what, written in the change's own
transaction (a refused change leaves no row), readable by admins only."""

from __future__ import annotations

from datetime import timedelta

from app.db.base import utcnow
from tests.app.conftest import Labs
from tests.factories import GENES, LABELS, write_model

PROBLEM = "application/problem+json"


def _events(labs: Labs, **params: str) -> list[dict[str, object]]:
    r = labs.client.get("/v1/audit", params=params, headers=labs.admin)
    assert r.status_code == 200, r.text
    events: list[dict[str, object]] = r.json()["events"]
    return events


def test_changes_are_recorded_with_their_key_and_tenant(labs: Labs) -> None:
    c = labs.client
    dataset = labs.upload(labs.a)
    job = labs.job(labs.a, dataset, "lab-model").json()
    write_model(root=labs.models, name="lab-model", genes=GENES, labels=LABELS)
    labs.wait_visible(labs.a, "lab-model")
    c.post("/v1/models/lab-model/aliases/production", json={"version": 1}, headers=labs.a)
    c.post(f"/v1/finetune-jobs/{job['id']}/cancel", headers=labs.admin)
    assert c.delete(f"/v1/datasets/{dataset}", headers=labs.a).status_code == 204
    lab_a = _events(labs, tenant="lab-a")
    # newest first; the four keys the fixture made are the CLI's, in their tenants
    assert [e["action"] for e in lab_a] == [
        "dataset.delete",
        "job.cancel",
        "model.alias.set",
        "job.create",
        "model.claim",
        "dataset.create",
        "key.create",
        "key.create",
    ]
    cancel = lab_a[1]
    assert (cancel["tenant"], cancel["resource_tenant"]) == ("ops", "lab-a")  # an admin's act
    assert str(cancel["actor"]).endswith("(operator)")
    create = lab_a[3]
    assert (create["resource_type"], create["resource_id"]) == ("job", job["id"])
    assert create["request_id"]  # the request it came from, as in the logs
    assert create["detail"] == {"output_name": "lab-model"}
    alias = lab_a[2]
    assert alias["detail"] == {"alias": "production", "version": 1, "previous": None}
    assert [e["action"] for e in _events(labs, resource_type="dataset")] == [
        "dataset.delete",
        "dataset.create",
    ]
    assert len(_events(labs, resource_id=job["id"])) == 2
    assert len(_events(labs, action="key.create")) == 4
    assert _events(labs, since=(utcnow() + timedelta(minutes=1)).isoformat()) == []
    assert len(_events(labs, tenant="lab-a", limit="2", offset="1")) == 2


def test_a_refused_change_leaves_no_row(labs: Labs) -> None:
    c = labs.client
    dataset = labs.upload(labs.b)
    assert labs.job(labs.b, dataset, "toy-classifier").status_code == 403  # the operator's
    assert labs.job(labs.b, dataset, "lab-b-model").status_code == 202
    assert c.delete(f"/v1/datasets/{dataset}", headers=labs.b).status_code == 409  # in use
    actions = [e["action"] for e in _events(labs, tenant="lab-b")]
    assert actions == ["job.create", "model.claim", "dataset.create", "key.create"]


def test_only_admins_read_the_audit_log(labs: Labs) -> None:
    for key in (labs.a, labs.a_predict, {}):
        r = labs.client.get("/v1/audit", headers=key)
        assert r.headers["content-type"] == PROBLEM
        assert r.status_code == (401 if not key else 403)
    r = labs.client.get("/v1/audit", params={"since": "2026-01-01T00:00"}, headers=labs.admin)
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)  # a time with no zone
