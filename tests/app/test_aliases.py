"""Model ownership and aliases over HTTP: a new version takes no unpinned traffic until it is
promoted; aliases are moved by the owner (train scope) or an admin, recorded, and pinnable."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.tables import AuditEvent, ModelAlias
from tests.app.conftest import Labs
from tests.factories import GENES, LABELS, write_model

PROBLEM = "application/problem+json"
BODY = {"genes": GENES, "samples": [{"id": "S1", "values": [0.5] * 10}]}


def _version(labs: Labs, path: str, key: dict[str, str], **params: Any) -> int:
    r = labs.client.post(path, json=BODY, headers=key, params=params)
    assert r.status_code == 200, r.text
    return int(r.json()["model"]["version"])


def _listed(labs: Labs, key: dict[str, str]) -> Any:
    models = labs.client.get("/v1/models", headers=key).json()["models"]
    return {m["name"]: m for m in models}["lab-model"]


def _two_versions(labs: Labs) -> None:
    """lab-a owns `lab-model`, with version 1 and a newer version 2 (as two jobs publish them)."""
    data = labs.upload(labs.a)
    assert labs.job(labs.a, data, "lab-model").status_code == 202
    write_model(root=labs.models, name="lab-model", genes=GENES, labels=LABELS, seed=3)
    labs.wait_visible(labs.a, "lab-model")
    write_model(root=labs.models, name="lab-model", version=2, genes=GENES, labels=LABELS, seed=4)
    labs.wait_visible(labs.a, "lab-model?version=2")


def test_a_new_version_takes_no_traffic_until_promoted(labs: Labs) -> None:
    c = labs.client
    _two_versions(labs)
    url = "/v1/models/lab-model/classify"
    assert _version(labs, url, labs.a) == 1  # the first version, until one is promoted
    listed = _listed(labs, labs.a)
    assert (listed["latest_version"], listed["default_version"]) == (2, 1)
    assert listed["default_rule"] == "first version (no production alias yet)"
    assert (listed["owner"], listed["aliases"]) == ("lab-a", {})
    assert _version(labs, url, labs.a, version=2) == 2  # pinned versions keep working
    assert _version(labs, "/v1/models/lab-model@latest/classify", labs.a) == 2

    r = c.post("/v1/models/lab-model/aliases/production", json={"version": 2}, headers=labs.a)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "lab-model", "alias": "production", "version": 2, "previous": None}
    assert _version(labs, url, labs.a) == 2  # at once, on this replica
    assert _version(labs, "/v1/models/lab-model@production/classify", labs.a) == 2
    assert _version(labs, url, labs.a, version=1) == 1
    listed = _listed(labs, labs.a)
    assert (listed["aliases"], listed["default_rule"]) == ({"production": 2}, "production alias")
    assert [v["aliases"] for v in listed["versions"]] == [[], ["production"]]
    assert c.get("/v1/models/lab-model", headers=labs.a).json()["version"] == 2
    # KServe v2 follows the same rule; a canary alias pins the other version there too
    r = c.post("/v1/models/lab-model/aliases/canary", json={"version": 1}, headers=labs.a)
    assert r.json()["previous"] is None
    infer = {"inputs": [{"name": "expression", "shape": [1, 10], "datatype": "FP32",
                         "data": [0.5] * 10}]}  # fmt: skip
    for name, version in (("lab-model", "2"), ("lab-model@canary", "1")):
        r = c.post(f"/v2/models/{name}/infer", json=infer, headers=labs.a)
        assert (r.status_code, r.json()["model_version"]) == (200, version), r.text
    # rolled back by moving the alias, recorded with what it named before
    r = c.post("/v1/models/lab-model/aliases/production", json={"version": 1}, headers=labs.a)
    assert r.json()["previous"] == 2
    assert _version(labs, url, labs.a) == 1
    assert c.delete("/v1/models/lab-model/aliases/production", headers=labs.a).status_code == 204
    assert _listed(labs, labs.a)["aliases"] == {"canary": 1}
    with Session(labs.engine) as s:
        events = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.resource_type == "model")
            .order_by(AuditEvent.created_at)
        ).all()
    moves = [(e.action, e.detail.get("alias"), e.detail.get("version")) for e in events]
    assert moves == [
        ("model.claim", None, None),
        ("model.alias.set", "production", 2),
        ("model.alias.set", "canary", 1),
        ("model.alias.set", "production", 1),
        ("model.alias.delete", "production", None),
    ]
    assert {(e.tenant, e.resource_tenant) for e in events} == {("lab-a", "lab-a")}


def test_who_may_move_an_alias(labs: Labs) -> None:
    c = labs.client
    _two_versions(labs)
    path = "/v1/models/lab-model/aliases/production"
    cases = [
        ({}, 401),  # no key
        (labs.a_predict, 403),  # the owner's lab, without the train scope
        (labs.b, 404),  # another lab: the model does not exist for it
        (labs.admin, 200),
        (labs.a, 200),
    ]
    for key, status in cases:
        r = c.post(path, json={"version": 2}, headers=key)
        assert (r.status_code, r.headers["content-type"].split(";")[0]) == (
            status,
            "application/json" if status == 200 else PROBLEM,
        ), (key, r.text)
    # the operator's models: an admin's only
    r = c.post("/v1/models/toy-classifier/aliases/production", json={"version": 1}, headers=labs.a)
    assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM)
    r = c.post(
        "/v1/models/toy-classifier/aliases/production", json={"version": 1}, headers=labs.admin
    )
    assert r.status_code == 200
    r = c.post("/v1/models/toy-classifier/classify", json=BODY)
    assert r.status_code == 401  # classify needs a key; the admin's answers from version 1
    assert _version(labs, "/v1/models/toy-classifier/classify", labs.admin) == 1


def test_bad_alias_requests(labs: Labs) -> None:
    c = labs.client
    _two_versions(labs)
    cases = [
        ("/v1/models/lab-model/aliases/Prod", {"version": 1}, 422, "an alias is"),
        ("/v1/models/lab-model/aliases/latest", {"version": 1}, 422, "latest"),
        ("/v1/models/lab-model/aliases/production", {"version": 9}, 404, "no version 9"),
        ("/v1/models/lab-model/aliases/production", {"version": 0}, 422, "version"),
        ("/v1/models/lab-model/aliases/production", {"v": 1}, 422, "version"),
        ("/v1/models/nothing/aliases/production", {"version": 1}, 404, "no model named"),
        ("/v1/models/../aliases/production", {"version": 1}, 404, "Not Found"),
        ("/v1/models/%2E%2E/aliases/production", {"version": 1}, 404, "no model named"),
    ]
    for path, body, status, words in cases:
        r = c.post(path, json=body, headers=labs.admin if ".." in path or "%2E" in path else labs.a)
        assert (r.status_code, r.headers["content-type"]) == (status, PROBLEM), (path, r.text)
        assert words in r.text
    r = c.delete("/v1/models/lab-model/aliases/canary", headers=labs.a)
    assert (r.status_code, r.headers["content-type"]) == (404, PROBLEM)
    r = c.post("/v1/models/lab-model@nope/classify", json=BODY, headers=labs.a)
    assert (r.status_code, r.headers["content-type"]) == (404, PROBLEM)
    assert "no alias 'nope'" in r.json()["detail"]
    r = c.post("/v1/models/lab-model@latest/classify", params={"version": 1}, json=BODY,
               headers=labs.a)  # fmt: skip
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)
    with Session(labs.engine) as s:
        assert s.scalars(select(ModelAlias)).all() == []  # nothing was changed


def test_aliased_versions_stay_loaded_beyond_keep_versions(labs: Labs) -> None:
    c = labs.client
    _two_versions(labs)
    r = c.post("/v1/models/lab-model/aliases/production", json={"version": 1}, headers=labs.a)
    assert r.status_code == 200
    for version in (3, 4, 5):  # keep_versions is 3: version 1 would fall out
        write_model(root=labs.models, name="lab-model", version=version, genes=GENES, labels=LABELS)
    labs.wait_visible(labs.a, "lab-model?version=5")
    listed = _listed(labs, labs.a)
    assert [v["version"] for v in listed["versions"]] == [1, 3, 4, 5]
    assert _version(labs, "/v1/models/lab-model/classify", labs.a) == 1
    assert np.isfinite(listed["latest_version"])


def test_an_alias_cannot_name_a_version_that_does_not_load(labs: Labs) -> None:
    _two_versions(labs)
    broken = labs.models / "lab-model" / "3"
    write_model(root=labs.models, name="lab-model", version=3, genes=GENES, labels=LABELS)
    (broken / "model.onnx").write_bytes(b"not onnx")  # its sha256 no longer matches its card
    deadline = time.monotonic() + 10
    while not any("lab-model/3" in e for e in _errors(labs)):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    r = labs.client.post(
        "/v1/models/lab-model/aliases/production", json={"version": 3}, headers=labs.a
    )
    assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM)
    assert "lab-model version 3 does not load" in r.json()["detail"]


def _errors(labs: Labs) -> list[str]:
    return [e.path for e in labs.client.app.state.registry.errors]  # type: ignore[attr-defined]
