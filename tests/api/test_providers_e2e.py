"""Each wire format behind the gateway, checked on what reached the (simulated) provider."""

from __future__ import annotations

import openai
import pytest

from interlock.sim import SimControl
from tests.support.gateway import AWS_KEY_ID, SIM_KEY

MSG = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Tell me about trains."},
]


@pytest.mark.parametrize("model", ["chat", "azure", "claude", "gemini", "bedrock"])
def test_plain_and_stream_through_every_format(
    oai: openai.OpenAI, sim: SimControl, model: str
) -> None:
    plain = oai.chat.completions.create(model=model, messages=MSG, max_tokens=8)
    assert plain.choices[0].message.content
    assert plain.usage is not None and plain.usage.completion_tokens <= 8
    chunks = list(oai.chat.completions.create(model=model, messages=MSG, max_tokens=8, stream=True,
                                              stream_options={"include_usage": True}))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == plain.usage.completion_tokens
    ledger = sim.ledger()["totals"]
    assert ledger["completion_tokens"] == 2 * plain.usage.completion_tokens


def test_azure_uses_deployment_url_and_api_key_header(oai: openai.OpenAI, sim: SimControl) -> None:
    oai.chat.completions.create(model="azure", messages=MSG)
    req = sim.requests()[-1]
    assert req["path"] == "/openai/deployments/my-gpt-deployment/chat/completions"
    assert req["query"]["api-version"] == "2024-10-21"
    assert req["headers"]["api-key"] == SIM_KEY


def test_gemini_key_in_header_never_in_url(oai: openai.OpenAI, sim: SimControl) -> None:
    oai.chat.completions.create(model="gemini", messages=MSG)
    oai.chat.completions.create(model="gemini", messages=MSG, stream=True).close()
    for req in sim.requests():
        assert SIM_KEY not in req["path"] and SIM_KEY not in str(req["query"])
        assert req["headers"]["x-goog-api-key"] == SIM_KEY


def test_bedrock_requests_are_sigv4_signed(oai: openai.OpenAI, sim: SimControl) -> None:
    oai.chat.completions.create(model="bedrock", messages=MSG)
    req = sim.requests()[-1]
    assert req["path"].startswith("/model/") and req["path"].endswith("/converse")
    auth = req["headers"]["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AWS_KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request" in auth and "x-amz-date" in req["headers"]


def test_anthropic_gets_system_and_version(oai: openai.OpenAI, sim: SimControl) -> None:
    oai.chat.completions.create(model="claude", messages=MSG)
    req = sim.requests()[-1]
    assert req["headers"]["x-api-key"] == SIM_KEY and req["headers"]["anthropic-version"]
    assert '"system"' in req["body"]


def test_openai_passthrough_forwards_client_bytes(oai: openai.OpenAI, sim: SimControl) -> None:
    oai.chat.completions.create(model="sim-large", messages=MSG, temperature=0.3)
    req = sim.requests()[-1]
    assert '"temperature":0.3' in req["body"].replace(" ", "")
    assert req["headers"]["authorization"] == f"Bearer {SIM_KEY}"
