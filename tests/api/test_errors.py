"""Bad input gets a clear OpenAI-style error, and never reaches an upstream."""

from __future__ import annotations

import httpx
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, SIM_KEY

MSG = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"


def _err(r: httpx.Response) -> dict:
    body = r.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    return body["error"]


@pytest.mark.parametrize(
    ("content", "ctype", "status", "code"),
    [
        (b"", "application/json", 400, "empty_body"),
        (b"[1, 2]", "application/json", 400, "invalid_json"),
        (b'{"model": ', "application/json", 400, "invalid_json"),
        (b'{"model": "\xff\xfe"}', "application/json", 400, "invalid_utf8"),
        (b"model=chat", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b"[" * 100 + b"]" * 100, "application/json", 400, "invalid_json"),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, "application/json", 400, "json_too_deep"),
        (
            b'{"model":"chat","messages":' + b"[" * 80 + b"]" * 80 + b"}",
            "application/json",
            400,
            "json_too_deep",
        ),
    ],
)
def test_malformed_bodies(
    http: httpx.Client, sim: SimControl, content: bytes, ctype: str, status: int, code: str
) -> None:
    r = http.post(CHAT, content=content, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert _err(r)["code"] == code
    assert sim.requests() == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "chat", "messages": MSG, "max_tokens": 0}, "max_tokens"),
        ({"model": "chat", "messages": MSG, "max_tokens": 10**12}, "max_tokens"),
        ({"model": "chat", "messages": MSG, "n": 1000}, "n"),
        ({"model": "chat", "messages": MSG, "temperature": 3}, "temperature"),
        ({"model": "chat", "messages": []}, "messages"),
        ({"model": "chat", "messages": MSG, "stream": "true"}, "stream"),
        ({"model": "chat", "messages": MSG, "api_base": "http://169.254.169.254"}, "api_base"),
        ({"model": "chat", "messages": MSG, "base_url": "http://127.0.0.1:6379"}, "base_url"),
        ({"messages": MSG}, "model"),
    ],
)
def test_invalid_fields_name_the_field(
    http: httpx.Client, sim: SimControl, body: dict, param: str
) -> None:
    r = http.post(CHAT, json=body)
    assert r.status_code == 400
    err = _err(r)
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert sim.requests() == []


def test_body_size_cap_before_parsing(http: httpx.Client, sim: SimControl) -> None:
    huge = (
        b'{"model":"chat","messages":[{"role":"user","content":"'
        + b"x" * (5 * 1024 * 1024)
        + b'"}]}'
    )
    r = http.post(CHAT, content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and _err(r)["code"] == "payload_too_large"
    assert sim.requests() == []


def test_unknown_model_is_404(http: httpx.Client, sim: SimControl) -> None:
    r = http.post(CHAT, json={"model": "gpt-17", "messages": MSG})
    assert r.status_code == 404 and _err(r)["code"] == "model_not_found"
    r = http.post("/v1/embeddings", json={"model": "chat", "input": "x"})
    assert r.status_code == 400 and _err(r)["code"] == "unsupported_model_endpoint"
    assert sim.requests() == []


def test_auth_errors(http: httpx.Client, sim: SimControl) -> None:
    r = httpx.post(http.base_url.join(CHAT), json={"model": "chat", "messages": MSG})
    assert r.status_code == 401 and _err(r)["code"] == "missing_api_key"
    r = httpx.post(http.base_url.join(CHAT), json={"model": "chat", "messages": MSG},
                   headers={"authorization": "Bearer sk-il-abcdefghijkl-wrong"})  # fmt: skip
    assert r.status_code == 401 and _err(r)["code"] == "invalid_api_key"
    assert sim.requests() == []


def test_routes_and_methods(http: httpx.Client) -> None:
    assert http.get("/v1/nothing").status_code == 404
    r = http.get(CHAT)
    assert r.status_code == 405 and _err(r)["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"type": "status", "status": 500}, 502, "upstream_unavailable"),
        ({"type": "status", "status": 503}, 502, "upstream_unavailable"),
        # Past max_retry_after_s (10 s): the gateway gives up at once and passes it on.
        ({"type": "status", "status": 429, "retry_after": 30}, 429, "upstream_rate_limited"),
        ({"type": "reset"}, 502, "upstream_unavailable"),
        ({"type": "malformed"}, 502, "upstream_protocol_error"),
    ],
)
def test_upstream_failures_are_mapped(
    http: httpx.Client, sim: SimControl, fault: dict, status: int, code: str
) -> None:
    sim.set_faults([fault])
    r = http.post(CHAT, json={"model": "chat", "messages": MSG})
    assert r.status_code == status, r.text
    err = _err(r)
    assert err["code"] == code
    if status == 429:
        assert r.headers["retry-after"] == "30"
    assert SIM_KEY not in r.text and "127.0.0.1" not in r.text


def test_upstream_timeout_is_504(http: httpx.Client, sim: SimControl) -> None:
    sim.set_faults([{"type": "timeout"}])
    r = http.post(CHAT, json={"model": "slow", "messages": MSG})
    assert r.status_code == 504 and _err(r)["code"] == "upstream_timeout"


def test_upstream_rejecting_the_gateways_key_is_not_a_401(
    http: httpx.Client, sim: SimControl
) -> None:
    sim.set_faults([{"type": "status", "status": 401}])
    r = http.post(CHAT, json={"model": "chat", "messages": MSG})
    assert r.status_code == 502
    assert SIM_KEY not in r.text and MASTER_KEY not in r.text


def test_stream_cut_before_done_ends_with_error_event(http: httpx.Client, sim: SimControl) -> None:
    sim.set_faults([{"type": "cut_stream", "after_chunks": 3}])
    with http.stream("POST", CHAT, json={"model": "chat", "messages": MSG, "stream": True}) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] != "data: [DONE]"
    assert '"upstream_protocol_error"' in events[-1] or '"upstream_unavailable"' in events[-1]


def test_failover_to_next_deployment(http: httpx.Client) -> None:
    r = http.post(CHAT, json={"model": "failover", "messages": MSG})
    assert r.status_code == 200
    assert r.headers["x-interlock-deployment"] == "sim-medium"
    assert r.headers["x-interlock-attempts"] == "2"
