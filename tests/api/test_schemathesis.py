"""Schemathesis against the REAL gateway's ``/openapi.json``: no input is a 5xx.

A real ``interlock serve`` process in front of the simulated provider; every operation of
the served OpenAPI document, positive and negative cases (bodies that fit the schema and
bodies that break it field by field), each sent with the master key and with a user key.
Checks: the answer is never a server error, its status is one the operation declares,
and its body and content type match what the document declares for that status. The seed
is fixed, so a failure reproduces; the drill variant (``make drills``) runs many more
examples per operation.

Operations that change what every later request sees are undone after each case (a forced
degradation level, a global budget of $0), so one generated case cannot turn the rest of
the run into refusals and hide a 500 behind them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

SEED = 20261207
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:  # fmt: skip
    work = tmp_path_factory.mktemp("schemathesis")
    cfg = sim_config(sim_url, work / "state")
    cfg["models"]["embed"] = {"deployments": ["sim-embed"]}
    del cfg["models"]["slow"]  # a deliberately slow upstream answers 504 by design
    gw = GatewayProcess(cfg, work).start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def keys(fuzz_gateway: GatewayProcess) -> dict[str, dict[str, str]]:
    master = {"authorization": f"Bearer {MASTER_KEY}"}
    r = httpx.post(f"{fuzz_gateway.url}/admin/keys", json={"name": "fuzz-user"}, headers=master)
    assert r.status_code == 201, r.text
    return {"master": master, "user": {"authorization": f"Bearer {r.json()['key']}"}}


CHAT_MODELS = ["chat", "failover", "azure", "claude", "gemini", "bedrock"]
EMBED_MODELS = ["embed"]


def _body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    schema: dict[str, Any] = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]  # fmt: skip
    return schema


def _narrow(doc: dict[str, Any]) -> None:
    """Point generated ``model`` fields at the configured aliases of the right kind (the
    served document rightly says "any string": which names exist is configuration), so
    positive cases reach the upstreams and negative ones still try every other value."""
    models = {
        "/v1/chat/completions": CHAT_MODELS,
        "/v1/completions": ["chat", "failover"],
        "/v1/messages": CHAT_MODELS,
        "/v1/embeddings": EMBED_MODELS,
    }
    for path, names in models.items():
        _body_schema(doc, path)["properties"]["model"] = {"enum": names}
    job_bodies = _body_schema(doc, "/v1/jobs")["properties"]["body"]["anyOf"]
    order = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/messages")
    for body, names in zip(job_bodies, (models[p] for p in order), strict=True):
        body["properties"]["model"] = {"enum": names}


def _schema(gw: GatewayProcess) -> Any:
    doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
    _narrow(doc)
    config = schemathesis.config.SchemathesisConfig.from_dict({"seed": SEED})
    schema = schemathesis.openapi.from_dict(doc, config=config)
    schema.config.update(base_url=gw.url)
    return schema


def _undo(case: Any, response: Any, gw: GatewayProcess, master: dict[str, str]) -> None:
    """Take back what would make every later case a refusal."""
    path, method = case.operation.path, case.method.upper()
    if path == "/admin/degradation" and method == "PUT":
        httpx.put(f"{gw.url}/admin/degradation", json={"level": "auto"}, headers=master)
    elif path == "/admin/budgets" and method == "POST" and response.status_code == 201:
        budget_id = response.json()["id"]
        httpx.delete(f"{gw.url}/admin/budgets/{budget_id}", headers=master)


def _code(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return "-"
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or error.get("type")) if isinstance(error, dict) else "-"


def _fuzz(gw: GatewayProcess, keys: dict[str, dict[str, str]], max_examples: int) -> None:
    """Every operation, positive then negative cases, both keys; every failure collected
    (one per operation and mode, unshrunk: the case itself is printed)."""
    failures: dict[tuple[str, str, str], str] = {}
    calls = 0
    statuses: Counter[tuple[str, str, int, str]] = Counter()
    started = time.monotonic()
    for result in _schema(gw).get_all_operations():
        op = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=max_examples,
                derandomize=True,
                database=None,
                deadline=None,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                nonlocal calls
                for who in ("master", "user"):
                    response = case.call(headers=keys[who], timeout=30)
                    calls += 1
                    statuses[(op.label, mode.value, response.status_code, _code(response))] += 1
                    try:
                        case.validate_response(response, checks=CHECKS, headers=keys[who])
                    except (AssertionError, BaseExceptionGroup) as exc:  # FailureGroup
                        failures.setdefault(
                            (op.label, mode.value, who),
                            f"{op.label} ({mode.value}, {who} key): {str(exc)[:1500]}\n"
                            f"  request: {case.method} {case.formatted_path} "
                            f"query={case.query} body={str(case.body)[:300]}\n"
                            f"  answer: {response.status_code} {response.text[:300]}",
                        )
                    finally:
                        _undo(case, response, gw, keys["master"])

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing to break: an operation without parameters or body
    print(f"\nschemathesis: {calls} calls in {time.monotonic() - started:.1f}s")
    for (label, mode, status, code), n in sorted(statuses.items()):
        print(f"  {label} {mode}: {status} {code} x{n}")
    assert not failures, f"{len(failures)} failing:\n\n" + "\n\n".join(failures.values())


def test_no_input_is_a_server_error(
    fuzz_gateway: GatewayProcess, keys: dict[str, dict[str, str]]
) -> None:
    _fuzz(fuzz_gateway, keys, max_examples=6)


@pytest.mark.drill
def test_no_input_is_a_server_error_long(
    fuzz_gateway: GatewayProcess, keys: dict[str, dict[str, str]]
) -> None:
    _fuzz(fuzz_gateway, keys, max_examples=50)


def test_stored_state_still_lists(fuzz_gateway: GatewayProcess, keys: dict[str, dict[str, str]]) -> None:  # fmt: skip
    """Whatever the fuzzing stored (keys, budgets, jobs, batches, files), every listing
    still answers 200 with JSON — run after the fuzzing in this module."""
    with httpx.Client(base_url=fuzz_gateway.url, timeout=30) as c:
        for who in ("master", "user"):
            for path in ("/v1/jobs", "/v1/batches", "/v1/files", "/v1/models"):
                r = c.get(path, headers=keys[who])
                assert r.status_code == 200 and isinstance(r.json(), dict), (who, path, r.text)
        for path in ("/admin/keys", "/admin/budgets", "/admin/jobs/dead", "/admin/dashboard/data",
                     "/admin/alerts", "/admin/budgets/alerts", "/admin/deployments"):  # fmt: skip
            r = c.get(path, headers=keys["master"])
            assert r.status_code == 200 and isinstance(r.json(), dict), (path, r.text)
