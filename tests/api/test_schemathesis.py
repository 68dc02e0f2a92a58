"""Schemathesis against the REAL gateway's ``/openapi.json``: no input is a 5xx.

A real ``interlock serve`` process in front of the simulated provider, and schemathesis's
own engine over every operation of the document the gateway serves: the coverage phase
(for every field: a wrong type, each boundary, a value outside the enum, a missing
required field — this is what finds "role given as a list") and the fuzzing phase
(positive and negative cases), once with the master key and once with a user key.
Checks: never a server error, a status the operation declares, the declared content
type, and a body matching the declared schema. The seed is fixed, so a run reproduces;
the drill variant (``make drills``) adds many more fuzzed examples and the stateful phase
(links inferred from the responses: create, then read, list, cancel, delete).

Operations that change what every later request sees are undone after each call (a
forced degradation level, a global budget of $0), so one generated case cannot turn the
rest of the run into refusals and hide a 500 behind them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.engine import events

from tests.support.gateway import MASTER_KEY, GatewayProcess, sim_config

SEED = 20261207
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
CHAT_MODELS = ["chat", "failover", "azure", "claude", "gemini", "bedrock"]
EMBED_MODELS = ["embed"]


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
        "/v1/embeddings": EMBED_MODELS,
        "/v1/messages": CHAT_MODELS,
    }
    for path, names in models.items():
        _body_schema(doc, path)["properties"]["model"] = {"enum": names}
    # The job body's schemas, in the document's order: chat, completions, embeddings, messages.
    job_bodies = _body_schema(doc, "/v1/jobs")["properties"]["body"]["anyOf"]
    for body, names in zip(job_bodies, models.values(), strict=True):
        body["properties"]["model"] = {"enum": names}


def _undoer(gw: GatewayProcess) -> Any:
    master = {"authorization": f"Bearer {MASTER_KEY}"}

    def after_call(context: Any, case: Any, response: Any) -> None:
        """Take back what would make every later case a refusal."""
        path, method = case.operation.path, case.method.upper()
        if path == "/admin/degradation" and method == "PUT":
            httpx.put(f"{gw.url}/admin/degradation", json={"level": "auto"}, headers=master)
        elif path == "/admin/budgets" and method == "POST" and response.status_code == 201:
            budget_id = response.json()["id"]
            httpx.delete(f"{gw.url}/admin/budgets/{budget_id}", headers=master)

    return after_call


def _run(gw: GatewayProcess, headers: dict[str, str], *, max_examples: int, stateful: bool) -> tuple[list[str], Counter[str]]:  # fmt: skip
    doc = httpx.get(f"{gw.url}/openapi.json", timeout=10).json()
    _narrow(doc)
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "base-url": gw.url,
            "headers": headers,
            "request-timeout": 30,
            "generation": {"max-examples": max_examples, "mode": "all", "deterministic": True},
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": stateful},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        }
    )
    schema = schemathesis.openapi.from_dict(doc, config=config)
    schema.hook("after_call")(_undoer(gw))
    failures: list[str] = []
    calls: Counter[str] = Counter()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, interaction in event.recorder.interactions.items():
                status = interaction.response.status_code if interaction.response else "error"
                calls[f"{event.recorder.cases[case_id].value.operation.label} {status}"] += 1
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    if node.failure_info is not None:
                        failures.append(
                            f"{event.label} [{event.phase.name}] {node.name}: "
                            f"{node.failure_info.failure.title}\n{node.failure_info.code_sample[:800]}"
                        )
        elif isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"engine error: {event}")
    return failures, calls


def _fuzz(gw: GatewayProcess, keys: dict[str, dict[str, str]], *, max_examples: int, stateful: bool) -> None:  # fmt: skip
    started = time.monotonic()
    failures: list[str] = []
    total: Counter[str] = Counter()
    for who, headers in keys.items():
        found, calls = _run(gw, headers, max_examples=max_examples, stateful=stateful)
        failures += [f"({who} key) {f}" for f in found]
        total.update(calls)
    print(f"\nschemathesis: {sum(total.values())} calls in {time.monotonic() - started:.1f}s")
    for line, n in sorted(total.items()):
        print(f"  {line} x{n}")
    server_errors = [k for k in total if k.rsplit(" ", 1)[1].startswith("5")]
    assert not server_errors, server_errors
    assert not failures, f"{len(failures)} failing:\n\n" + "\n\n".join(dict.fromkeys(failures))


def test_no_input_is_a_server_error(
    fuzz_gateway: GatewayProcess, keys: dict[str, dict[str, str]]
) -> None:
    _fuzz(fuzz_gateway, keys, max_examples=5, stateful=False)


@pytest.mark.drill
def test_no_input_is_a_server_error_long(
    fuzz_gateway: GatewayProcess, keys: dict[str, dict[str, str]]
) -> None:
    _fuzz(fuzz_gateway, keys, max_examples=100, stateful=True)


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
