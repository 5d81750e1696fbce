"""Keys: list, revoke, rotate and expire them (CLI and admin routes); a revoked or expired key is
refused from the next request on; last use is written at most once a minute; every change is in
the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from app.cli import main
from app.config import get_settings
from app.db.base import utcnow
from app.db.tables import ApiKey, AuditEvent
from app.security import LAST_USED_EVERY, parse_duration
from tests.app.conftest import Labs

PROBLEM = "application/problem+json"


@pytest.fixture
def cli(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GENEXFER_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _row(engine: Engine, prefix: str) -> ApiKey:
    with Session(engine) as s:
        row = s.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one()
        s.expunge(row)
    return row


def _prefix(headers: dict[str, str]) -> str:
    return headers["X-API-Key"].split("_")[1]


def test_revoke_then_call_is_refused_at_once(labs: Labs) -> None:
    c = labs.client
    assert c.get("/v1/datasets", headers=labs.b).status_code == 200
    row = _row(labs.engine, _prefix(labs.b))
    r = c.post(f"/v1/keys/{row.id}/revoke", headers=labs.admin)
    assert (r.status_code, r.json()["state"]) == (200, "revoked")
    # no key is cached anywhere: the very next request is refused, however soon it comes
    r = c.get("/v1/datasets", headers=labs.b)
    assert (r.status_code, r.headers["content-type"]) == (401, PROBLEM), r.text
    assert "revoked or expired" in r.json()["detail"]
    r = c.post("/v1/models/toy-classifier/classify", json={}, headers=labs.b)
    assert r.status_code == 401
    # revoking again changes nothing and is not audited twice
    assert c.post(f"/v1/keys/{row.id}/revoke", headers=labs.admin).status_code == 200
    with Session(labs.engine) as s:
        revokes = s.scalars(select(AuditEvent).where(AuditEvent.action == "key.revoke")).all()
    assert [(e.resource_id, e.resource_tenant, e.tenant) for e in revokes] == [
        (row.prefix, "lab-b", "ops")
    ]


def test_keys_routes_are_an_admin_s_and_list_create_rotate(labs: Labs) -> None:
    c = labs.client
    r = c.get("/v1/keys", headers=labs.a)
    assert (r.status_code, r.headers["content-type"]) == (403, PROBLEM)
    listed = c.get("/v1/keys", params={"tenant": "lab-a"}, headers=labs.admin).json()["keys"]
    assert sorted(k["scopes"] for k in listed) == [["predict"], ["predict", "train"]]
    assert all("key" not in k and k["state"] == "active" for k in listed)
    body = {"name": "sequencer", "tenant": "lab-c", "scopes": ["predict"], "expires_in_days": 90}
    r = c.post("/v1/keys", json=body, headers={**labs.admin, "Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["key"].startswith(f"gx_{created['prefix']}_")
    assert r.headers["cache-control"] == "no-store"
    left = created["expires_at"]
    assert left > (utcnow() + timedelta(days=89)).isoformat()
    new = {"X-API-Key": created["key"]}
    assert c.get("/v1/predictions", headers=new).status_code == 200
    # a key is never kept for an Idempotency-Key replay: the same request creates another key
    again = c.post("/v1/keys", json=body, headers={**labs.admin, "Idempotency-Key": "k1"})
    assert again.json()["prefix"] != created["prefix"]
    rotated = c.post(
        f"/v1/keys/{created['id']}/rotate", json={"grace_seconds": 300}, headers=labs.admin
    ).json()
    assert (rotated["name"], rotated["tenant"], rotated["rotated_from"]) == (
        "sequencer",
        "lab-c",
        created["id"],
    )
    # the old key works for its grace period, the new one at once
    assert c.get("/v1/predictions", headers=new).status_code == 200
    assert c.get("/v1/predictions", headers={"X-API-Key": rotated["key"]}).status_code == 200
    with Session(labs.engine) as s:
        past = utcnow() - timedelta(seconds=1)
        s.execute(update(ApiKey).where(ApiKey.prefix == created["prefix"]).values(revoked_at=past))
        s.commit()
    assert c.get("/v1/predictions", headers=new).status_code == 401
    r = c.post(f"/v1/keys/{created['id']}/rotate", json={}, headers=labs.admin)
    assert (r.status_code, r.headers["content-type"]) == (409, PROBLEM)
    bad = [
        {"name": "x", "tenant": "Lab A"},
        {"name": "x", "scopes": ["root"]},
        {"name": "", "scopes": ["predict"]},
        {"name": "x", "expires_in_days": 0},
    ]
    for body in bad:
        r = c.post("/v1/keys", json=body, headers=labs.admin)
        assert (r.status_code, r.headers["content-type"]) == (422, PROBLEM), body
    missing = "/v1/keys/00000000-0000-0000-0000-000000000000/revoke"
    assert c.post(missing, headers=labs.admin).status_code == 404
    with Session(labs.engine) as s:
        by_admin = select(AuditEvent).where(AuditEvent.tenant == "ops")
        actions = [e.action for e in s.scalars(by_admin)]
    assert sorted(actions) == ["key.create"] * 3 + ["key.rotate"]  # 2 keys + the rotated one


def test_an_expired_key_is_refused(labs: Labs) -> None:
    c = labs.client
    with Session(labs.engine) as s:
        soon = utcnow() + timedelta(hours=1)
        s.execute(update(ApiKey).where(ApiKey.prefix == _prefix(labs.a)).values(expires_at=soon))
        s.commit()
    assert c.get("/v1/datasets", headers=labs.a).status_code == 200
    with Session(labs.engine) as s:
        past = utcnow() - timedelta(seconds=1)
        s.execute(update(ApiKey).where(ApiKey.prefix == _prefix(labs.a)).values(expires_at=past))
        s.commit()
    r = c.get("/v1/datasets", headers=labs.a)
    assert (r.status_code, r.headers["content-type"]) == (401, PROBLEM)
    listed = c.get("/v1/keys", params={"include_revoked": True}, headers=labs.admin).json()
    states = {k["prefix"]: k["state"] for k in listed["keys"]}
    assert states[_prefix(labs.a)] == "expired"


def test_last_use_is_written_at_most_once_a_minute(labs: Labs) -> None:
    c = labs.client
    prefix = _prefix(labs.a)
    assert _row(labs.engine, prefix).last_used_at is None
    c.get("/v1/datasets", headers=labs.a)
    first = _row(labs.engine, prefix).last_used_at
    assert first is not None
    c.get("/v1/datasets", headers=labs.a)
    assert _row(labs.engine, prefix).last_used_at == first  # not written again
    with Session(labs.engine) as s:
        old = utcnow() - LAST_USED_EVERY - timedelta(seconds=1)
        s.execute(update(ApiKey).where(ApiKey.prefix == prefix).values(last_used_at=old))
        s.commit()
    c.get("/v1/datasets", headers=labs.a)
    assert _row(labs.engine, prefix).last_used_at > first  # type: ignore[operator]


def test_cli_lists_revokes_and_rotates_keys(
    cli: None, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "create", "--name", "lims", "--tenant", "lab-a", "--scopes", "predict,train"]
    assert main([*argv, "--expires-in", "90d"]) == 0
    key = capsys.readouterr().out.strip()
    prefix = key.split("_")[1]
    row = _row(engine, prefix)
    assert (row.tenant, row.scopes) == ("lab-a", ["predict", "train"])
    assert row.expires_at is not None
    assert timedelta(days=89) < row.expires_at - utcnow() <= timedelta(days=90)
    assert main(["keys", "list", "--tenant", "lab-a"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split("\t")[:5] == ["prefix", "name", "tenant", "scopes", "state"]
    assert out[1].split("\t")[:5] == [prefix, "lims", "lab-a", "predict,train", "active"]
    assert main(["keys", "rotate", prefix, "--grace", "1h"]) == 0
    captured = capsys.readouterr()
    new_prefix = captured.out.strip().split("_")[1]
    assert "stops working at" in captured.err
    assert _row(engine, new_prefix).rotated_from == row.id
    assert main(["keys", "revoke", key]) == 0  # the whole key names it too
    assert "revoked key" in capsys.readouterr().err
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert new_prefix in listed
    assert prefix not in listed  # revoked: shown with --all only
    assert main(["keys", "list", "--all"]) == 0
    assert f"{prefix}\tlims\tlab-a\tpredict,train\trevoked" in capsys.readouterr().out
    with Session(engine) as s:
        actors = {e.actor for e in s.scalars(select(AuditEvent))}
    assert actors == {"genexfer keys (CLI)"}


def test_a_key_revoked_by_the_cli_is_refused_by_the_running_service(
    labs: Labs, cli: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert labs.client.get("/v1/datasets", headers=labs.b).status_code == 200
    assert main(["keys", "revoke", _prefix(labs.b)]) == 0
    assert "revoked key" in capsys.readouterr().err
    # the service caches no key: its very next request is refused
    assert labs.client.get("/v1/datasets", headers=labs.b).status_code == 401


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["keys", "revoke", "nope"], "no API key with prefix 'nope'"),
        (["keys", "rotate", "nope"], "no API key with prefix 'nope'"),
        (["keys", "create", "--name", "x", "--expires-in", "soon"], "a duration reads like"),
        (["keys", "create", "--name", "x", "--tenant", "Lab A"], "tenant 'Lab A'"),
    ],
)
def test_cli_errors_are_one_line(
    cli: None, capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert words in err


def test_cli_with_the_database_away_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GENEXFER_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        assert main(["keys", "list"]) == 1
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("error: the database postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_durations() -> None:
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration("12h") == timedelta(hours=12)
    for bad in ("0d", "d", "90", "1y", "-1d"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
