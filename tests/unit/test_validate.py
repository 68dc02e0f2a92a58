"""Request validation: every refusal names its field and happens before any upstream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from interlock.api import validate
from interlock.errors import InvalidRequest
from interlock.settings import ServerSettings

CFG = ServerSettings(max_n=4, max_tokens_limit=100_000)
MSG = [{"role": "user", "content": "hi"}]


def chat(**body: Any) -> Any:
    data = {"model": "m", "messages": MSG, **body}
    return validate.chat_request(data, orjson.dumps(data), CFG)


def test_valid_request_keeps_raw_bytes() -> None:
    req = chat(stream=True, stream_options={"include_usage": True}, temperature=0.5)
    assert req.stream and req.include_usage and req.model == "m"
    assert orjson.loads(req.raw)["temperature"] == 0.5


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"n": 5}, "n"),
        ({"n": 0}, "n"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"stream": "yes"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 5}, "stop"),
        ({"seed": 1.5}, "seed"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"text": "no type"}]}]},
            "messages[0].content[0]",
        ),
        ({"model": ""}, "model"),
        ({"model": 7}, "model"),
        ({"api_base": "http://evil.example"}, "api_base"),
        ({"base_url": "http://evil.example"}, "base_url"),
        ({"upstream_url": "http://10.0.0.1"}, "upstream_url"),
        ({"api_key": "sk-stolen"}, "api_key"),
        ({"tools": "x"}, "tools"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name"),
        ({"response_format": "json"}, "response_format"),
        ({"top_logprobs": 50}, "top_logprobs"),
        ({"stream_options": {"include_usage": "y"}}, "stream_options.include_usage"),
    ],
)
def test_bad_chat_fields(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        chat(**body)
    assert exc.value.param == param
    assert exc.value.status == 400


def test_missing_model_and_messages() -> None:
    for missing in ("model", "messages"):
        data = {"model": "m", "messages": MSG}
        del data[missing]
        with pytest.raises(InvalidRequest) as exc:
            validate.chat_request(data, b"", CFG)
        assert exc.value.param == missing and exc.value.code == "missing_required_parameter"


@pytest.mark.parametrize(
    ("inp", "ok"),
    [
        ("text", True),
        (["a", "b"], True),
        ([1, 2, 3], True),
        ([[1, 2], [3]], True),
        ("", False),
        ([], False),
        (["a", 1], False),
        ([[]], False),
        ({"x": 1}, False),
        (["x"] * 2049, False),
    ],
)
def test_embeddings_input_shapes(inp: Any, ok: bool) -> None:
    data = {"model": "e", "input": inp}
    if ok:
        assert validate.embeddings_request(data, b"", CFG).model == "e"
    else:
        with pytest.raises(InvalidRequest) as exc:
            validate.embeddings_request(data, b"", CFG)
        assert exc.value.param == "input"


def test_completion_needs_prompt() -> None:
    with pytest.raises(InvalidRequest) as exc:
        validate.completion_request({"model": "m"}, b"", CFG)
    assert exc.value.param == "prompt"
