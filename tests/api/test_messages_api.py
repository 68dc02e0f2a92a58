"""The Anthropic Messages API inbound: the anthropic SDK works against any provider."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from interlock.sim import SimControl
from tests.support.gateway import MASTER_KEY, GatewayProcess


@pytest.fixture
def claude_sdk(gateway: GatewayProcess, sim: SimControl) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER_KEY, max_retries=0) as c:
        yield c


@pytest.mark.parametrize("model", ["chat", "claude", "gemini", "bedrock"])
def test_messages_plain_and_stream(claude_sdk: anthropic.Anthropic, model: str) -> None:
    kwargs = {"model": model, "max_tokens": 12, "system": "Be brief.",
              "messages": [{"role": "user", "content": "Hello"}]}  # fmt: skip
    msg = claude_sdk.messages.create(**kwargs)  # type: ignore[arg-type]
    assert msg.type == "message" and msg.role == "assistant"
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert text and msg.usage.output_tokens > 0 and msg.stop_reason in ("end_turn", "max_tokens")
    with claude_sdk.messages.stream(**kwargs) as stream:  # type: ignore[arg-type]
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == text
    assert final.usage.output_tokens == msg.usage.output_tokens


def test_messages_tools(claude_sdk: anthropic.Anthropic) -> None:
    tools = [{"name": "lookup", "description": "Look up a word",
              "input_schema": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}]  # fmt: skip
    msg = claude_sdk.messages.create(model="chat", max_tokens=50, tools=tools,  # type: ignore[arg-type]
                                     tool_choice={"type": "any"},
                                     messages=[{"role": "user", "content": "define rail"}])  # fmt: skip
    use = next(b for b in msg.content if b.type == "tool_use")
    assert use.name == "lookup" and isinstance(use.input["word"], str)  # type: ignore[index]
    assert msg.stop_reason == "tool_use"


def test_messages_errors_use_anthropic_shape(
    claude_sdk: anthropic.Anthropic, gateway: GatewayProcess
) -> None:
    with pytest.raises(anthropic.NotFoundError):
        claude_sdk.messages.create(
            model="nope", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    with pytest.raises(anthropic.BadRequestError):
        claude_sdk.messages.create(
            model="chat", max_tokens=-1, messages=[{"role": "user", "content": "x"}]
        )
    bad = anthropic.Anthropic(base_url=gateway.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="chat", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    bad.close()
