"""Virtual keys through the admin API: create, list, update, revoke; scoping by model."""

from __future__ import annotations

import time

import httpx

from tests.support.gateway import GatewayProcess

MSG = [{"role": "user", "content": "hi"}]


def _chat(gateway: GatewayProcess, key: str, model: str = "chat") -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": model, "messages": MSG},
                      headers={"authorization": f"Bearer {key}"}, timeout=30)  # fmt: skip


def test_create_use_list_revoke(gateway: GatewayProcess, http: httpx.Client) -> None:
    r = http.post(
        "/admin/keys", json={"user": "u1", "team": "t1", "tags": ["search"], "models": ["chat"]}
    )
    assert r.status_code == 201
    created = r.json()
    key, key_id = created["key"], created["id"]
    assert key.startswith("sk-il-") and created["user"] == "u1" and created["team"] == "t1"
    assert _chat(gateway, key).status_code == 200

    listed = http.get("/admin/keys").json()["data"]
    assert key_id in {k["id"] for k in listed}
    assert key not in http.get("/admin/keys").text  # the secret is shown once, never again
    assert http.get(f"/admin/keys/{key_id}").json()["tags"] == ["search"]

    r = http.patch(f"/admin/keys/{key_id}", json={"team": "t2"})
    assert r.status_code == 200 and r.json()["team"] == "t2"

    assert http.delete(f"/admin/keys/{key_id}").json()["revoked"] is True
    deadline = time.monotonic() + 3  # auth.cache_ttl_s is 0.5 in the test config
    while _chat(gateway, key).status_code != 401:
        assert time.monotonic() < deadline, "revoked key still accepted"
        time.sleep(0.1)
    assert _chat(gateway, key).json()["error"]["code"] == "api_key_revoked"


def test_model_scoped_key(gateway: GatewayProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    key = new_key(models=["chat"])
    assert _chat(gateway, key, "chat").status_code == 200
    r = _chat(gateway, key, "claude")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    models = httpx.get(
        f"{gateway.url}/v1/models", headers={"authorization": f"Bearer {key}"}
    ).json()
    assert [m["id"] for m in models["data"]] == ["chat"]


def test_non_admin_cannot_administer(gateway: GatewayProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    key = new_key(user="plain")
    r = httpx.get(f"{gateway.url}/admin/keys", headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    r = httpx.post(f"{gateway.url}/admin/keys", json={"admin": True},
                   headers={"authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code == 403


def test_admin_created_admin_key_works(gateway: GatewayProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    admin = new_key(admin=True)
    r = httpx.get(f"{gateway.url}/admin/keys", headers={"authorization": f"Bearer {admin}"})
    assert r.status_code == 200


def test_bad_admin_input(http: httpx.Client) -> None:
    r = http.post("/admin/keys", json={"tags": "nope"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tags"
    r = http.post("/admin/keys", json={"secret": "x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_field"
    assert http.get("/admin/keys/nope").status_code == 404
    assert http.delete("/admin/keys/nope").status_code == 404


def test_other_auth_headers(gateway: GatewayProcess, new_key) -> None:  # type: ignore[no-untyped-def]
    key = new_key()
    for header in ("x-api-key", "api-key"):
        r = httpx.post(f"{gateway.url}/v1/chat/completions", json={"model": "chat", "messages": MSG},
                       headers={header: key})  # fmt: skip
        assert r.status_code == 200, header
