from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from interlock.sim import SimControl


@pytest.fixture
def http(sim: SimControl) -> Iterator[httpx.Client]:
    """An HTTP client for the (freshly reset) simulator."""
    with httpx.Client(base_url=sim.url, timeout=10.0) as client:
        yield client


@pytest.fixture
def anthropic_headers() -> dict[str, str]:
    return {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}


@pytest.fixture
def gemini_headers() -> dict[str, str]:
    return {"x-goog-api-key": "gemini-test-key"}


@pytest.fixture
def bedrock_headers() -> dict[str, str]:
    return {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/bedrock/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        "x-amz-date": "20240101T000000Z",
    }


WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 3},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "alerts": {"type": "boolean"},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "where": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}


@pytest.fixture
def weather_schema() -> dict[str, Any]:
    """A JSON schema using every keyword the simulator's generator supports."""
    return WEATHER
