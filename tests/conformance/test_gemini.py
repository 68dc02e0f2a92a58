"""Gemini API and Vertex AI against what Google publishes: the google-genai SDK's types
(``interlock.sim.conformance.gemini.ORIGIN``) and the limits its docstrings and the Gemini
API documentation state.

* Every case of the canonical matrix, built by :class:`GeminiAdapter` for kinds ``gemini``
  and ``vertex`` and one model of each family (2.0, 2.5 flash, 2.5 pro, 3 pro): the
  outbound ``GenerateContentRequest`` passes the validator (0 mismatches) or the adapter
  answered a 400 naming the parameter; it is sent to the simulated provider, whose answer
  (JSON or SSE events) must read as ``GenerateContentResponse``, and the adapter's
  translation must fit OpenAI's published schema and parse with the openai SDK's types.
* Embeddings (``EMBEDDING_CASES``): Gemini API ``batchEmbedContents``; Vertex
  ``embedContent`` / ``batchEmbedContents`` for Gemini embedding models (one content per
  ``embedContent``, as the SDK sends them) and ``predict`` for ``text-embedding-*``.
* Spec-shaped Gemini answers written here (validated by the SDK types first): usage with
  cached and thinking tokens, function calls with ids, SAFETY / RECITATION stops, a blocked
  prompt, streamed thoughts, and each documented error status.
* The simulator refuses what Google refuses (400 ``INVALID_ARGUMENT``).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from interlock.errors import (
    InvalidRequest,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from interlock.providers.base import Target, UpstreamCall
from interlock.providers.capabilities import rules_for
from interlock.providers.gemini import GeminiAdapter
from interlock.providers.rules.gemini import GEMINI_TOOL_ID
from interlock.providers.sse import SSEParser
from interlock.sim.conformance import openai as openai_spec
from interlock.sim.conformance.gemini import (
    ORIGIN,
    predict_problems,
    request_problems,
    response_problems,
)
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest
from tests.conformance.matrix import CHAT_CASES, EMBEDDING_CASES, FOREIGN_ID, RICH_TOOL, Case

KINDS = ("gemini", "vertex")
FLASH_20 = "gemini-2.0-flash"
FLASH_25 = "gemini-2.5-flash"
PRO_25 = "gemini-2.5-pro"
PRO_3 = "gemini-3-pro-preview"
MODELS = (FLASH_20, FLASH_25, PRO_25, PRO_3)


def adapter(kind: str) -> GeminiAdapter:
    return GeminiAdapter(vertex=kind == "vertex")


def target_of(kind: str, model: str, url: str = "https://google.test") -> Target:
    if kind == "vertex":
        return Target(
            name="v",
            provider="vertex",
            model=model,
            base_url=url,
            region="europe-west4",
            project="acme",
            headers={"Authorization": "Bearer sim-token"},
        )
    return Target(
        name="g", provider="gemini", model=model, base_url=url, headers={"x-goog-api-key": "k"}
    )


def request_of(body: JSON, endpoint: Endpoint = Endpoint.CHAT) -> GatewayRequest:
    return GatewayRequest(
        endpoint=endpoint,
        model="alias",
        body=body,
        raw=orjson.dumps(body),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )


def openai_issues(schema: str, obj: Any) -> list[str]:
    return [f"{i.param}: {i.message}" for i in openai_spec.issues(schema, obj)]


def check_answer(body: bytes) -> ChatCompletion:
    data = orjson.loads(body)
    assert openai_issues("CreateChatCompletionResponse", data) == []
    for choice in data["choices"]:
        assert "refusal" in choice["message"]  # the OpenAI schema requires the field
    return ChatCompletion.model_validate(data)


def check_chunks(chunks: list[Chunk]) -> None:
    for chunk in chunks:
        assert openai_issues("CreateChatCompletionStreamResponse", chunk.obj) == []
        ChatCompletionChunk.model_validate(chunk.obj)


def build(
    case: Case, kind: str, model: str
) -> tuple[GatewayRequest, UpstreamCall | InvalidRequest]:
    req = request_of(case.body)
    before = orjson.dumps(case.body)
    try:
        call: UpstreamCall | InvalidRequest = adapter(kind).build(req, target_of(kind, model))
    except InvalidRequest as exc:
        call = exc
    assert orjson.dumps(req.body) == before, "the adapter changed the client's body"
    return req, call


def outbound(case: Case | str, model: str, kind: str = "gemini") -> tuple[JSON, tuple[str, ...]]:
    if isinstance(case, str):
        case = next(c for c in CHAT_CASES if c.name == case)
    _, call = build(case, kind, model)
    assert isinstance(call, UpstreamCall), call
    return orjson.loads(call.body), call.warnings


# ------------------------------------------------------------------------ the artefact


def test_origin_and_rules() -> None:
    assert ORIGIN.startswith("google-genai 3.6.1 types")
    for kind in KINDS:
        assert rules_for(kind, PRO_3).family == "gemini-3-pro"
        assert rules_for(kind, "gemini-2.5-flash-lite").family == "gemini-2.5-flash-lite"
        assert rules_for(kind, FLASH_25).tool_schema == "json-schema"
        assert rules_for(kind, FLASH_20).tool_schema == "openapi-subset"
        assert rules_for(kind, FLASH_20).tool_id == GEMINI_TOOL_ID


GOOD: JSON = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def with_params(params: JSON) -> JSON:
    return {**GOOD, "tools": [{"functionDeclarations": [{"name": "f", "parameters": params}]}]}


def obj(**props: Any) -> JSON:
    return {"type": "OBJECT", "properties": props}


@pytest.mark.parametrize(
    ("body", "model", "where"),
    [
        ({**GOOD, "temperature": 0.5}, FLASH_25, 'Unknown name "temperature"'),
        ({"contents": []}, FLASH_25, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, FLASH_25, "role"),
        ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, FLASH_25, "empty text"),
        ({"contents": [{"role": "user", "parts": []}]}, FLASH_25, "parts"),
        (
            with_params({"type": "object", "properties": {"a": {"type": "STRING"}}}),
            FLASH_25,
            "type",
        ),
        (with_params(obj(a={"type": "INTEGER", "enum": [1, 2]})), FLASH_25, "enum"),
        (with_params(obj(a={"type": "NUMBER", "enum": ["1"]})), FLASH_25, "enum"),
        (with_params(obj(a={"type": "ARRAY"})), FLASH_25, "items"),
        (with_params(obj(a={"$ref": "#/$defs/X"})), FLASH_25, "$ref"),
        (
            with_params({**obj(a={"type": "STRING"}), "additionalProperties": False}),
            FLASH_25,
            "additionalProperties",
        ),
        (with_params(obj(a={"type": "INTEGER", "format": "email"})), FLASH_25, "format"),
        (with_params(obj(a={"type": "NUMBER", "format": "int64"})), FLASH_25, "format"),
        (with_params({"type": "OBJECT", "properties": {}}), FLASH_25, "non-empty"),
        (
            {**GOOD, "tools": [{"functionDeclarations": [{"name": "bad name"}]}]},
            FLASH_25,
            "Invalid function name",
        ),
        (
            {
                **GOOD,
                "tools": [
                    {
                        "functionDeclarations": [
                            {
                                "name": "f",
                                "parameters": obj(a={"type": "STRING"}),
                                "parametersJsonSchema": {"type": "object"},
                            }
                        ]
                    }
                ],
            },
            FLASH_25,
            "mutually exclusive",
        ),
        (
            {
                **GOOD,
                "tools": [
                    {
                        "functionDeclarations": [
                            {"name": "f", "parametersJsonSchema": {"type": "array"}}
                        ]
                    }
                ],
            },
            FLASH_25,
            "object",
        ),
        (
            {
                **GOOD,
                "toolConfig": {
                    "functionCallingConfig": {"mode": "AUTO", "allowedFunctionNames": ["f"]}
                },
            },
            FLASH_25,
            "allowed_function_names",
        ),
        ({**GOOD, "generationConfig": {"stopSequences": list("abcdef")}}, FLASH_25, "stop"),
        ({**GOOD, "generationConfig": {"candidateCount": 9}}, FLASH_25, "candidate_count"),
        ({**GOOD, "generationConfig": {"temperature": 2.5}}, FLASH_25, "temperature"),
        ({**GOOD, "generationConfig": {"logprobs": 3}}, FLASH_25, "response_logprobs"),
        ({**GOOD, "generationConfig": {"maxTokens": 3}}, FLASH_25, "maxTokens"),
        (
            {**GOOD, "generationConfig": {"responseSchema": obj(a={"type": "STRING"})}},
            FLASH_25,
            "response_mime_type",
        ),
        (
            {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
            PRO_25,
            "only works in thinking mode",
        ),
        (
            {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingBudget": 50000}}},
            FLASH_25,
            "thinking budget",
        ),
        (
            {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH"}}},
            FLASH_25,
            "Thinking level",
        ),
        (
            {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingLevel": "MEDIUM"}}},
            PRO_3,
            "MEDIUM",
        ),
        (
            {
                **GOOD,
                "generationConfig": {
                    "thinkingConfig": {"thinkingLevel": "HIGH", "thinkingBudget": 1024}
                },
            },
            PRO_3,
            "together",
        ),
        (
            {**GOOD, "generationConfig": {"thinkingConfig": {"thinkingBudget": 1024}}},
            FLASH_20,
            "not supported",
        ),
        ({**GOOD, "safetySettings": [{"category": "NOPE"}]}, FLASH_25, "safety_settings"),
    ],
)
def test_validator_refuses(body: JSON, model: str, where: str) -> None:
    problems = request_problems(body, model)
    assert problems and any(where in p for p in problems), problems


def test_validator_accepts() -> None:
    body = {
        **GOOD,
        "systemInstruction": {"parts": [{"text": "terse"}]},
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "ns.f:x-1",
                        "parameters": obj(
                            a={"type": "INTEGER", "format": "enum", "enum": ["1", "2"]},
                            b={"type": "STRING", "format": "date-time", "nullable": True},
                            c={"type": "ARRAY", "items": {"type": "NUMBER", "format": "double"}},
                        ),
                    },
                    {"name": "g", "parametersJsonSchema": RICH_TOOL["function"]["parameters"]},
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["g"]}},
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "$defs": {}, "additionalProperties": False},
            "thinkingConfig": {"thinkingBudget": -1},
            "stopSequences": ["a", "b", "c", "d", "e"],
            "responseLogprobs": True,
            "logprobs": 20,
        },
        "safetySettings": [
            {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
        ],
    }
    assert request_problems(body, FLASH_25) == []
    assert request_problems({**GOOD, "labels": {"team": "a"}}, FLASH_25, vertex=True) == []
    assert request_problems({**GOOD, "labels": {"team": "a"}}, FLASH_25) != []


def test_predict_instances() -> None:
    two = {"instances": [{"content": "a"}, {"content": "b"}]}
    assert predict_problems(two, "gemini-embedding-001")
    assert predict_problems({"instances": [{"content": "a"}]}, "gemini-embedding-001") == []
    assert predict_problems(two, "text-embedding-005") == []
    many = {"instances": [{"content": "x"}] * 251}
    assert predict_problems(many, "text-embedding-005")


# ----------------------------------------------------------- the matrix, built and checked


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", MODELS)
def test_matrix_outbound_fits_the_spec(kind: str, model: str) -> None:
    mismatches: list[str] = []
    refused: dict[str, str | None] = {}
    for case in CHAT_CASES:
        _, call = build(case, kind, model)
        if isinstance(call, InvalidRequest):
            assert call.status == 400 and call.param, (case.name, call)
            refused[case.name] = call.param
            continue
        body = orjson.loads(call.body)
        mismatches += [
            f"{case.name}: {p}" for p in request_problems(body, model, vertex=kind == "vertex")
        ]
        method = "streamGenerateContent" if case.stream else "generateContent"
        assert f"/models/{model}:{method}" in call.url
        assert ("/projects/acme/locations/europe-west4/publishers/google/" in call.url) == (
            kind == "vertex"
        )
    assert mismatches == []
    assert refused == {}  # every case has an equivalent or is dropped with a warning


def test_matrix_tool_schemas() -> None:
    rich = RICH_TOOL["function"]["parameters"]
    # 2.5+ families take the client's JSON Schema as written ($defs, integer enum, formats).
    body, warnings = outbound("rich_tool_schema", FLASH_25)
    decl = body["tools"][0]["functionDeclarations"][0]
    assert decl == {"name": "book_trip", "description": "Book a trip", "parametersJsonSchema": rich}
    assert any(w.startswith("tools[0].function.strict dropped") for w in warnings)
    # 2.0: the OpenAPI subset, in the spec's type names.
    body, warnings = outbound("rich_tool_schema", FLASH_20)
    params = body["tools"][0]["functionDeclarations"][0]["parameters"]
    props = params["properties"]
    assert params["type"] == "OBJECT" and "additionalProperties" not in params
    assert props["when"] == {"type": "STRING", "format": "date-time"}
    assert props["contact"] == {"type": "STRING", "description": "Format: email."}
    assert props["seats"] == {"type": "INTEGER", "description": "One of: 1, 2, 3."}
    assert props["tags"] == {"type": "ARRAY", "items": {"type": "STRING"}}
    assert props["class"] == {"type": "STRING", "nullable": True}
    traveller = props["travellers"]["items"]
    assert traveller["type"] == "OBJECT" and traveller["title"] == "Traveller"
    assert traveller["properties"]["age"] == {"type": "INTEGER", "nullable": True, "minimum": 0}
    assert props["budget"] == {"type": "NUMBER"}
    assert any("enum of integer values moved to the description" in w for w in warnings)
    assert any("array without items" in w for w in warnings)
    # response_format json_schema: native on every family.
    schema = CHAT_CASES[[c.name for c in CHAT_CASES].index("json_schema")].body["response_format"][
        "json_schema"
    ]["schema"]
    body, _ = outbound("json_schema", PRO_25)
    assert body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": schema,
    }
    body, _ = outbound("json_schema", FLASH_20)
    assert body["generationConfig"]["responseSchema"]["properties"]["landmarks"] == {
        "type": "ARRAY",
        "items": {"type": "STRING"},
    }


SHOW = {"includeThoughts": True}  # the thinking extension asks for the thoughts


def test_matrix_thinking_and_parameters() -> None:
    body, _ = outbound("reasoning_effort", FLASH_25)
    assert body["generationConfig"] == {
        "maxOutputTokens": 4096,
        "thinkingConfig": {"thinkingBudget": 24576},
    }
    body, _ = outbound("reasoning_effort", PRO_3)
    assert body["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "HIGH"}
    body, warnings = outbound("reasoning_effort", FLASH_20)
    assert "thinkingConfig" not in body["generationConfig"]
    assert any(w.startswith("reasoning_effort dropped") for w in warnings)
    # The canonical thinking extension: budget_tokens -> thinkingBudget, within the range.
    ext = Case("t", {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    for model, thinking, expected in (
        (FLASH_25, {"type": "enabled", "budget_tokens": 2048}, {"thinkingBudget": 2048, **SHOW}),
        (PRO_25, {"type": "enabled", "budget_tokens": 64}, {"thinkingBudget": 128, **SHOW}),
        (PRO_25, {"type": "disabled"}, {"thinkingBudget": 128}),
        (FLASH_25, {"type": "disabled"}, {"thinkingBudget": 0}),
        (PRO_3, {"type": "enabled", "budget_tokens": 4000}, {"thinkingLevel": "HIGH", **SHOW}),
        (
            "gemini-3-flash-preview",
            {"type": "enabled", "budget_tokens": 4000},
            {"thinkingLevel": "MEDIUM", **SHOW},
        ),
    ):
        case = Case("t", {**ext.body, "thinking": thinking})
        body, _ = outbound(case, model)
        assert body["generationConfig"]["thinkingConfig"] == expected, (model, thinking)
        assert request_problems(body, model) == []
    for name, model, config in (
        ("temperature_high", FLASH_25, {"temperature": 1.6}),
        ("temperature_top_p", FLASH_25, {"temperature": 0.7, "topP": 0.9}),
        ("seed", FLASH_25, {"seed": 42}),
        ("n_2", FLASH_25, {"candidateCount": 2}),
        ("stop_string", FLASH_25, {"stopSequences": ["END"]}),
        ("max_tokens", FLASH_25, {"maxOutputTokens": 64}),
        ("logprobs", FLASH_25, {"responseLogprobs": True, "logprobs": 2}),
        ("penalties", FLASH_25, {"presencePenalty": 0.5, "frequencyPenalty": 0.5}),
        ("penalties", PRO_25, {}),
    ):
        body, _ = outbound(name, model)
        assert body.get("generationConfig", {}) == config, name
    _, warnings = outbound("penalties", PRO_25)
    assert any(w.startswith("presence_penalty dropped") for w in warnings)
    _, warnings = outbound("user_and_metadata", FLASH_25)
    assert any(w.startswith("user dropped") for w in warnings)
    # What cannot be dropped without changing the answer: refused, naming the parameter.
    for extra, param in (({"stop": list("abcdef")}, "stop"), ({"n": 9}, "n")):
        case = Case("x", {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra})
        _, call = build(case, "gemini", FLASH_25)
        assert isinstance(call, InvalidRequest) and call.param == param
        assert call.code == "unsupported_parameter"


def test_matrix_tool_ids() -> None:
    for model in (FLASH_25, PRO_3):
        body, _ = outbound("tool_round_trip", model)
        calls = [p for p in body["contents"][1]["parts"]]
        responses = [p["functionResponse"] for p in body["contents"][2]["parts"]]
        ids = [p["functionCall"]["id"] for p in calls]
        assert ids[1] == "call_abc123" and ids[0] != FOREIGN_ID
        assert all(GEMINI_TOOL_ID.accepts(i) for i in ids)
        assert [r["id"] for r in responses] == ids  # each result paired with its call
        # stable: the same foreign id maps the same way on every request
        assert outbound("tool_round_trip", model)[0]["contents"][1]["parts"][0] == calls[0]
        # Gemini 3 needs signatures on function calls; another model's carry the dummy.
        sigs = {p.get("thoughtSignature") for p in calls}
        assert sigs == ({"skip_thought_signature_validator"} if model == PRO_3 else {None})


# ------------------------------------------------------------------- over HTTP, the sim


async def send(call: UpstreamCall) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(call.method, call.url, headers=call.headers, data=call.body) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def sse_events(raw: bytes) -> list[Any]:
    parser = SSEParser()
    return [orjson.loads(ev.data) for ev in [*parser.feed(raw), *parser.flush()]]


@pytest.mark.parametrize(
    ("kind", "model"), [("gemini", FLASH_25), ("vertex", FLASH_20), ("gemini", PRO_3)]
)
async def test_matrix_over_http(sim_url: str, kind: str, model: str) -> None:
    ad = adapter(kind)
    target = target_of(kind, model, sim_url)
    for case in CHAT_CASES:
        req = request_of(case.body)
        call = ad.build(req, target)
        status, _, raw = await send(call)
        assert status == 200, (case.name, raw[:300])
        if not case.stream:
            assert response_problems(orjson.loads(raw)) == [], case.name
            done = ad.parse(req, target, status, raw)
            answer = check_answer(done.body)
            assert answer.usage is not None and done.usage is not None
            continue
        for event in sse_events(raw):
            assert response_problems(event) == [], case.name
        decoder = ad.stream_decoder(req, target)
        chunks = [*decoder.feed(raw), *decoder.close()]
        check_chunks(chunks)
        assert decoder.completed and chunks[-1 if not req.include_usage else -2].obj["choices"][0][
            "finish_reason"
        ] in ("stop", "tool_calls", "length")
        if req.include_usage:
            assert chunks[-1].obj["usage"]["prompt_tokens"] > 0


EMBED_MODELS = (
    ("gemini", "gemini-embedding-001"),
    ("gemini", "text-embedding-004"),
    ("vertex", "gemini-embedding-001"),
    ("vertex", "text-embedding-005"),
)


@pytest.mark.parametrize(("kind", "model"), EMBED_MODELS)
async def test_embeddings_over_http(sim_url: str, kind: str, model: str) -> None:
    ad = adapter(kind)
    target = target_of(kind, model, sim_url)
    for case in EMBEDDING_CASES:
        req = request_of(case.body, Endpoint.EMBEDDINGS)
        call = ad.build(req, target)
        inputs = case.body["input"]
        count = 1 if isinstance(inputs, str) else len(inputs)
        method = call.url.rsplit(":", 1)[-1]
        if kind == "gemini":
            assert method == "batchEmbedContents"
        elif "gemini" in model:
            # never several instances in one predict: embedContent, or the batch method
            assert method == ("embedContent" if count == 1 else "batchEmbedContents")
        else:
            assert method == "predict"
            assert len(orjson.loads(call.body)["instances"]) == count
        status, _, raw = await send(call)
        assert status == 200, (case.name, raw[:300])
        assert response_problems(orjson.loads(raw), "embed") == [], case.name
        done = ad.parse(req, target, status, raw)
        data = orjson.loads(done.body)
        assert openai_issues("CreateEmbeddingResponse", data) == []
        parsed = CreateEmbeddingResponse.model_validate(data)
        assert len(parsed.data) == count
        if case.body.get("dimensions"):
            assert len(parsed.data[0].embedding) == case.body["dimensions"]


async def test_sim_refuses_like_google(sim_url: str) -> None:
    vertex = target_of("vertex", "gemini-embedding-001", sim_url)
    base = GeminiAdapter(vertex=True).url(vertex, "predict")
    two = {"instances": [{"content": "a"}, {"content": "b"}]}
    call = UpstreamCall("POST", base, dict(vertex.headers), orjson.dumps(two))
    status, _, raw = await send(call)
    err = orjson.loads(raw)["error"]
    assert status == 400 and err["code"] == 400 and err["status"] == "INVALID_ARGUMENT"
    assert "instance" in err["message"]
    assert isinstance(GeminiAdapter(vertex=True).error(status, {}, raw), UpstreamBadRequest)
    text = target_of("vertex", "text-embedding-005", sim_url)
    call = UpstreamCall(
        "POST",
        GeminiAdapter(vertex=True).url(text, "predict"),
        dict(text.headers),
        orjson.dumps(two),
    )
    assert (await send(call))[0] == 200
    gemini = target_of("gemini", FLASH_25, sim_url)
    url = GeminiAdapter().url(gemini, "generateContent")
    for bad in (
        with_params({"type": "object", "properties": {"a": {"type": "string"}}}),
        {**GOOD, "generationConfig": {"stopSequences": list("abcdef")}},
        {**GOOD, "unknown": 1},
    ):
        call = UpstreamCall("POST", url, dict(gemini.headers), orjson.dumps(bad))
        status, _, raw = await send(call)
        err = orjson.loads(raw)["error"]
        assert status == 400 and set(err) == {"code", "message", "status"}
        assert err["status"] == "INVALID_ARGUMENT" and err["code"] == 400


# ------------------------------------------------------- spec-shaped answers, fed back


def fixture(data: JSON) -> bytes:
    assert response_problems(data) == [], data
    return orjson.dumps(data)


CHAT = request_of({"model": "m", "messages": [{"role": "user", "content": "x"}]})
TARGET = target_of("gemini", FLASH_25)


def test_usage_with_cached_and_thinking_tokens() -> None:
    raw = fixture(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": "Let me think", "thought": True}, {"text": "Hi"}],
                    },
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 1200,
                "cachedContentTokenCount": 1024,
                "candidatesTokenCount": 3,
                "thoughtsTokenCount": 40,
                "totalTokenCount": 1243,
                "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 1024}],
            },
            "modelVersion": FLASH_25,
            "responseId": "r1",
        }
    )
    done = GeminiAdapter().parse(CHAT, TARGET, 200, raw)
    answer = check_answer(done.body)
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.cached_tokens) == (1200, 1024)
    assert (done.usage.completion_tokens, done.usage.reasoning_tokens) == (43, 40)
    assert answer.usage is not None
    assert answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 1024
    assert answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == 40
    assert answer.choices[0].message.content == "Hi"
    assert orjson.loads(done.body)["choices"][0]["message"]["reasoning_content"] == "Let me think"


def test_parallel_function_calls_with_ids() -> None:
    raw = fixture(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {
                                "functionCall": {
                                    "id": "fc-1",
                                    "name": "get_weather",
                                    "args": {"city": "Paris"},
                                },
                                "thoughtSignature": "c2ln",
                            },
                            {
                                "functionCall": {
                                    "id": "fc-2",
                                    "name": "get_weather",
                                    "args": {"city": "Oslo"},
                                }
                            },
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 10,
                "candidatesTokenCount": 8,
                "totalTokenCount": 18,
            },
        }
    )
    done = GeminiAdapter().parse(CHAT, TARGET, 200, raw)
    answer = check_answer(done.body)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.id.split("__thought__")[0] for c in calls] == ["fc-1", "fc-2"]
    # The next turn sends the ids back on the call and its response, signature included.
    follow = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
            *({"role": "tool", "tool_call_id": c.id, "content": "ok"} for c in calls),
        ],
    }
    call = GeminiAdapter().build(request_of(follow), TARGET)
    body = orjson.loads(call.body)
    assert request_problems(body, FLASH_25) == []
    parts = body["contents"][1]["parts"]
    assert [p["functionCall"]["id"] for p in parts] == ["fc-1", "fc-2"]
    assert parts[0]["thoughtSignature"] == "c2ln"
    assert [p["functionResponse"]["id"] for p in body["contents"][2]["parts"]] == ["fc-1", "fc-2"]


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "PROHIBITED_CONTENT", "SPII"])
def test_filtered_answers(reason: str) -> None:
    raw = fixture(
        {
            "candidates": [
                {
                    "finishReason": reason,
                    "index": 0,
                    "safetyRatings": [
                        {
                            "category": "HARM_CATEGORY_HARASSMENT",
                            "probability": "HIGH",
                            "blocked": True,
                        }
                    ],
                }
            ],
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        }
    )
    answer = check_answer(GeminiAdapter().parse(CHAT, TARGET, 200, raw).body)
    choice = answer.choices[0]
    assert choice.finish_reason == "content_filter" and choice.message.content is None
    assert choice.message.refusal and reason in choice.message.refusal
    # text written before the stop stays the answer; no refusal then
    partial = fixture(
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "Once upon"}]},
                    "finishReason": reason,
                }
            ]
        }
    )
    answer = check_answer(GeminiAdapter().parse(CHAT, TARGET, 200, partial).body)
    assert answer.choices[0].message.content == "Once upon"
    assert answer.choices[0].message.refusal is None
    assert answer.choices[0].finish_reason == "content_filter"


def test_blocked_prompt() -> None:
    raw = fixture(
        {
            "promptFeedback": {
                "blockReason": "PROHIBITED_CONTENT",
                "safetyRatings": [
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
                ],
            },
            "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
        }
    )
    done = GeminiAdapter().parse(CHAT, TARGET, 200, raw)
    answer = check_answer(done.body)
    assert answer.choices[0].finish_reason == "content_filter"
    assert (
        answer.choices[0].message.refusal
        and "PROHIBITED_CONTENT" in answer.choices[0].message.refusal
    )
    assert done.usage is not None and done.usage.prompt_tokens == 7
    # streamed: a refusal delta, then the content_filter stop
    stream = request_of(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    decoder = GeminiAdapter().stream_decoder(stream, TARGET)
    chunks = [*decoder.feed(b"data: " + raw + b"\r\n\r\n"), *decoder.close()]
    check_chunks(chunks)
    assert any(c.obj["choices"] and c.obj["choices"][0]["delta"].get("refusal") for c in chunks)
    assert chunks[-1].obj["choices"][0]["finish_reason"] == "content_filter"


def test_streamed_thoughts_calls_and_usage() -> None:
    events = [
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": "hmm", "thought": True}]},
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 20, "totalTokenCount": 20},
            "responseId": "s1",
        },
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {
                                "functionCall": {
                                    "id": "fc-9",
                                    "name": "get_weather",
                                    "args": {"city": "Rome"},
                                }
                            }
                        ],
                    },
                    "index": 0,
                }
            ]
        },
        {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": ""}]},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 20,
                "cachedContentTokenCount": 16,
                "candidatesTokenCount": 9,
                "thoughtsTokenCount": 30,
                "totalTokenCount": 59,
            },
        },
    ]
    raw = b"".join(b"data: " + fixture(e) + b"\r\n\r\n" for e in events)
    stream = request_of(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    decoder = GeminiAdapter().stream_decoder(stream, TARGET)
    chunks = [*decoder.feed(raw[:37]), *decoder.feed(raw[37:]), *decoder.close()]
    check_chunks(chunks)
    deltas = [c.obj["choices"][0]["delta"] for c in chunks if c.obj["choices"]]
    assert any(d.get("reasoning_content") == "hmm" for d in deltas)
    calls = [d["tool_calls"][0] for d in deltas if d.get("tool_calls")]
    assert calls[0]["id"] == "fc-9" and calls[0]["index"] == 0
    finish = [c.obj["choices"][0]["finish_reason"] for c in chunks if c.obj["choices"]]
    assert finish[-1] == "tool_calls"
    usage = chunks[-1].obj["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 16
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 30
    assert usage["completion_tokens"] == 39


def google_error_body(
    code: int, status: str, message: str, details: list[JSON] | None = None
) -> bytes:
    err: JSON = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return orjson.dumps({"error": err})


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (400, "INVALID_ARGUMENT", UpstreamBadRequest),
        (400, "FAILED_PRECONDITION", UpstreamUnavailable),
        (403, "PERMISSION_DENIED", UpstreamUnavailable),
        (404, "NOT_FOUND", UpstreamBadRequest),
        (429, "RESOURCE_EXHAUSTED", UpstreamRateLimited),
        (500, "INTERNAL", UpstreamUnavailable),
        (503, "UNAVAILABLE", UpstreamUnavailable),
        (504, "DEADLINE_EXCEEDED", UpstreamTimeout),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_documented_errors(
    kind: str, code: int, status: str, expected: type[UpstreamError]
) -> None:
    details = (
        [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]
        if code == 429
        else None
    )
    raw = google_error_body(code, status, f"{status.lower()} happened", details)
    err = adapter(kind).error(code, {}, raw)
    assert isinstance(err, expected), (code, status, err)
    if code == 429:
        assert isinstance(err, UpstreamRateLimited) and err.retry_after == 7
    # a streamed error (Gemini writes it as an SSE event) is the same error
    stream = request_of(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    decoder = adapter(kind).stream_decoder(stream, target_of(kind, FLASH_25))
    with pytest.raises(expected):
        decoder.feed(b"data: " + raw + b"\r\n\r\n")


# -------------------------------------------- beyond the matrix: the three-way invariant

HELLO = [{"role": "user", "content": "Say hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
EDGE_CASES: tuple[tuple[str, JSON], ...] = (
    ("max_tokens_zero", {"max_tokens": 0}),
    ("n_zero", {"n": 0}),
    ("n_9", {"n": 9}),
    ("stop_six", {"stop": ["a", "b", "c", "d", "e", "f"]}),
    ("stop_empty", {"stop": ["", "END"]}),
    ("seed_int64", {"seed": 2**40 + 3}),
    ("temperature_negative", {"temperature": -1}),
    ("temperature_max", {"temperature": 2}),
    ("top_p_high", {"top_p": 1.5}),
    ("penalties_extreme", {"presence_penalty": -2, "frequency_penalty": 2}),
    ("logprobs_no_top", {"logprobs": True}),
    ("top_logprobs_20", {"logprobs": True, "top_logprobs": 20}),
    ("effort_none", {"reasoning_effort": "none"}),
    ("effort_minimal", {"reasoning_effort": "minimal"}),
    ("effort_low", {"reasoning_effort": "low"}),
    ("effort_medium", {"reasoning_effort": "medium"}),
    ("effort_bogus", {"reasoning_effort": "extreme"}),
    ("thinking_huge", {"thinking": {"type": "enabled", "budget_tokens": 100000}}),
    ("service_tier", {"service_tier": "auto", "logit_bias": {"50256": -100}}),
    (
        "tool_choice_unknown",
        {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
    ),
    ("tool_choice_without_tools", {"tool_choice": "required"}),
    ("tool_choice_auto_without_tools", {"tool_choice": "auto"}),
    ("tool_no_params", {"tools": [{"type": "function", "function": {"name": "now"}}]}),
    (
        "tool_empty_params",
        {"tools": [{"type": "function", "function": {"name": "now", "parameters": {}}}]},
    ),
    ("tool_bad_name", {"tools": [{"type": "function", "function": {"name": "get weather"}}]}),
    (
        "tool_nested_refs",
        {
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "tree",
                        "parameters": {
                            "type": "object",
                            "definitions": {
                                "Leaf": {
                                    "type": "object",
                                    "properties": {"v": {"type": "number", "enum": [1.5, 2]}},
                                }
                            },
                            "properties": {
                                "leaf": {"$ref": "#/definitions/Leaf"},
                                "kind": {"const": "a"},
                                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                                "all": {
                                    "allOf": [
                                        {"type": "object", "properties": {"x": {"type": "boolean"}}}
                                    ]
                                },
                                "list": {"type": ["array", "null"]},
                                "id": {"type": "string", "format": "uuid"},
                            },
                        },
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "tree"}},
        },
    ),
    (
        "json_schema_refs",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "x",
                    "schema": {
                        "$schema": "https://json-schema.org/draft/2020-12/schema",
                        "type": "object",
                        "$defs": {
                            "P": {
                                "type": "object",
                                "properties": {"n": {"type": "integer", "enum": [1, 2]}},
                            }
                        },
                        "properties": {"p": {"$ref": "#/$defs/P"}, "tags": {"type": "array"}},
                    },
                },
            }
        },
    ),
    ("response_format_text", {"response_format": {"type": "text"}}),
    ("only_system", {"messages": [{"role": "system", "content": "x"}]}),
    ("empty_user", {"messages": [{"role": "user", "content": ""}]}),
    (
        "assistant_parts_and_names",
        {
            "messages": [
                {"role": "user", "content": "hi", "name": "ann"},
                {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "hello"}],
                    "refusal": None,
                },
                {"role": "user", "content": [{"type": "text", "text": "again"}]},
            ]
        },
    ),
    (
        "image_https",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://x.test/cat.png"}}
                    ],
                }
            ]
        },
    ),
    ("stream_n_2", {"stream": True, "n": 2}),
    ("max_completion_tokens_big", {"max_completion_tokens": 65536}),
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("model", (*MODELS, "gemini-2.5-flash-lite", "gemini-3-flash-preview"))
def test_edge_cases_translate_drop_or_refuse(kind: str, model: str) -> None:
    mismatches: list[str] = []
    for name, extra in EDGE_CASES:
        body = {"model": "m", "messages": HELLO, **extra}
        _, call = build(Case(name, body, stream=bool(body.get("stream"))), kind, model)
        if isinstance(call, InvalidRequest):
            assert call.status == 400 and call.param, (name, call)
            assert call.param.split(".")[0].split("[")[0] in {*extra, "messages"}, (
                name,
                call.param,
            )
            continue
        mismatches += [
            f"{name}: {p}"
            for p in request_problems(orjson.loads(call.body), model, vertex=kind == "vertex")
        ]
    assert mismatches == []


def test_edge_case_outcomes() -> None:
    def one(extra: JSON, model: str = FLASH_25) -> tuple[JSON, tuple[str, ...]] | InvalidRequest:
        _, call = build(Case("x", {"model": "m", "messages": HELLO, **extra}), "gemini", model)
        return (
            call if isinstance(call, InvalidRequest) else (orjson.loads(call.body), call.warnings)
        )

    for extra, param in (
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages"),
    ):
        got = one(extra)
        assert isinstance(got, InvalidRequest) and got.param == param, (extra, got)
    got = one({"seed": 2**40 + 3})
    assert not isinstance(got, InvalidRequest)
    assert got[0]["generationConfig"]["seed"] == 3 and any("seed folded" in w for w in got[1])
    got = one({"stop": ["", "END"]})
    assert not isinstance(got, InvalidRequest) and got[0]["generationConfig"] == {
        "stopSequences": ["END"]
    }
    got = one({"thinking": {"type": "enabled", "budget_tokens": 100000}})
    assert not isinstance(got, InvalidRequest)
    assert got[0]["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 24576,
        "includeThoughts": True,
    }
    got = one({"reasoning_effort": "none"}, PRO_3)
    assert not isinstance(got, InvalidRequest)
    assert got[0]["generationConfig"]["thinkingConfig"] == {"thinkingLevel": "LOW"}
    assert any("always think" in w for w in got[1])
    got = one({"service_tier": "auto"})
    assert not isinstance(got, InvalidRequest) and any(
        w.startswith("service_tier dropped") for w in got[1]
    )


async def test_too_many_embedding_inputs(sim_url: str) -> None:
    body = {"model": "e", "input": [f"t{i}" for i in range(101)]}
    for kind in KINDS:
        with pytest.raises(InvalidRequest) as exc:
            adapter(kind).build(
                request_of(body, Endpoint.EMBEDDINGS), target_of(kind, "gemini-embedding-001")
            )
        assert exc.value.param == "input"
    target = target_of("gemini", "gemini-embedding-001", sim_url)
    reqs = [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "x"}]}}] * 101
    call = UpstreamCall(
        "POST",
        GeminiAdapter().url(target, "batchEmbedContents"),
        dict(target.headers),
        orjson.dumps({"requests": reqs}),
    )
    status, _, raw = await send(call)
    assert status == 400 and orjson.loads(raw)["error"]["status"] == "INVALID_ARGUMENT"


def test_parallel_tool_calls_warning_only_when_off() -> None:
    _, warnings = outbound("tools_parallel_off", FLASH_25)
    assert any(w.startswith("parallel_tool_calls dropped") for w in warnings)
    case = Case(
        "x", {"model": "m", "messages": HELLO, "tools": [WEATHER], "parallel_tool_calls": True}
    )
    _, warnings = outbound(case, FLASH_25)
    assert warnings == ()


@pytest.mark.parametrize("kind", KINDS)
async def test_thinking_through_the_simulator(sim_url: str, kind: str) -> None:
    """reasoning_effort (thoughts counted, not shown) and the thinking extension (thought
    summaries asked for: reasoning_content) through the simulator: thinking tokens reach
    usage as reasoning_tokens inside completion_tokens, plain and streamed."""
    ad = adapter(kind)
    target = target_of(kind, FLASH_25, sim_url)
    base = {"model": "m", "messages": [{"role": "user", "content": "Tell me a long story"}]}
    for extra, shown in (
        ({"reasoning_effort": "low"}, False),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, True),
    ):
        req = request_of({**base, **extra})
        status, _, raw = await send(ad.build(req, target))
        assert status == 200 and response_problems(orjson.loads(raw)) == []
        meta = orjson.loads(raw)["usageMetadata"]
        done = ad.parse(req, target, status, raw)
        answer = check_answer(done.body)
        assert (
            done.usage is not None and done.usage.reasoning_tokens == meta["thoughtsTokenCount"] > 0
        )
        assert (
            done.usage.completion_tokens
            == meta["candidatesTokenCount"] + meta["thoughtsTokenCount"]
        )
        assert answer.usage is not None and answer.usage.completion_tokens_details is not None
        assert (
            answer.usage.completion_tokens_details.reasoning_tokens == done.usage.reasoning_tokens
        )
        message = orjson.loads(done.body)["choices"][0]["message"]
        assert bool(message.get("reasoning_content")) == shown
        stream = request_of(
            {**base, **extra, "stream": True, "stream_options": {"include_usage": True}}
        )
        status, _, raw = await send(ad.build(stream, target))
        assert status == 200
        for event in sse_events(raw):
            assert response_problems(event) == []
        decoder = ad.stream_decoder(stream, target)
        chunks = [*decoder.feed(raw), *decoder.close()]
        check_chunks(chunks)
        usage = chunks[-1].obj["usage"]
        assert usage["completion_tokens_details"]["reasoning_tokens"] == done.usage.reasoning_tokens
        assert usage["completion_tokens"] == done.usage.completion_tokens
        streamed = any(
            c.obj["choices"] and c.obj["choices"][0]["delta"].get("reasoning_content")
            for c in chunks
        )
        assert streamed == shown


def test_subset_objects_and_required() -> None:
    schema = {
        "type": "object",
        "properties": {"meta": {"type": "object", "properties": {}}, "a": {"type": "string"}},
        "required": ["a", "ghost"],
    }
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    body, _ = outbound(Case("x", {"model": "m", "messages": HELLO, "tools": [tool]}), FLASH_20)
    params = body["tools"][0]["functionDeclarations"][0]["parameters"]
    assert params["properties"]["meta"] == {"type": "OBJECT"}
    assert params["required"] == ["a"]
    assert request_problems(body, FLASH_20) == []
    assert request_problems(with_params(obj(m={"type": "OBJECT", "properties": {}})), FLASH_20)
