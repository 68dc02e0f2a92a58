"""OpenAI-compatible wire format: OpenAI, Azure OpenAI, vLLM, Ollama, TGI, llama.cpp, ...

The client already speaks this format, so the fast path forwards the client's bytes
untouched; the body is re-serialised only when the upstream model name differs or a
stream needs ``stream_options.include_usage`` added so usage is always captured.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from interlock.errors import UpstreamError, UpstreamProtocolError, UpstreamUnavailable
from interlock.providers.base import (
    Completion,
    Target,
    UpstreamCall,
    json_object,
    map_status,
    upstream_message,
)
from interlock.providers.sse import SSEParser
from interlock.providers.tokens import (
    Generated,
    answer_usage,
    count_request_tokens,
    stream_usage,
)
from interlock.types import JSON, Chunk, Endpoint, GatewayRequest, Usage

_PATHS = {
    Endpoint.CHAT: "chat/completions",
    Endpoint.COMPLETIONS: "completions",
    Endpoint.EMBEDDINGS: "embeddings",
}


class OpenAIAdapter:
    wire = "openai"

    def __init__(self, *, azure: bool = False) -> None:
        self.azure = azure

    def supports(self, endpoint: Endpoint) -> bool:
        return True

    def url(self, endpoint: Endpoint, target: Target) -> str:
        base = target.base_url.rstrip("/")
        path = _PATHS[endpoint]
        if self.azure:
            version = target.api_version or "2024-10-21"
            return f"{base}/openai/deployments/{target.model}/{path}?api-version={version}"
        return f"{base}/{path}"

    def build(self, req: GatewayRequest, target: Target) -> UpstreamCall:
        body = req.raw
        needs_usage = req.stream and not req.include_usage
        if req.model != target.model or needs_usage or not body:
            data = dict(req.body)
            data["model"] = target.model
            if needs_usage:
                opts = data.get("stream_options")
                data["stream_options"] = {
                    **(opts if isinstance(opts, dict) else {}),
                    "include_usage": True,
                }
            body = orjson.dumps(data)
        headers = {"content-type": "application/json", **target.headers}
        if req.stream:
            headers["accept"] = "text/event-stream"
        return UpstreamCall("POST", self.url(req.endpoint, target), headers, body, req.stream)

    def parse(self, req: GatewayRequest, target: Target, status: int, body: bytes) -> Completion:
        data = json_object(body)
        if "error" in data and "choices" not in data and "data" not in data:
            raise UpstreamUnavailable(
                f"provider {target.provider} returned an error: {upstream_message(body)[:300]}"
            )
        usage = Usage.from_openai(data.get("usage"))
        if usage is None:
            usage = _estimate(req, data)
        return Completion(body, usage)

    def stream_decoder(self, req: GatewayRequest, target: Target) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(req, target.provider)

    def error(self, status: int, headers: Mapping[str, str], body: bytes) -> UpstreamError:
        err = map_status(status, headers, body, "upstream")
        if status == 400 and b"context_length_exceeded" in body:
            err.code = "context_length_exceeded"
        return err


def _estimate(req: GatewayRequest, data: JSON) -> Usage:
    """An answer without usage: the tokenizer counts the request and what came back."""
    if "choices" not in data:  # embeddings: the input is all there is
        return Usage(count_request_tokens(req.body), 0, estimated=True)
    return answer_usage(req.body, data)


class OpenAIStreamDecoder:
    """SSE in, chunks out. Events that cannot carry usage or an error are passed through
    unparsed (a structural check only): parsing every event was a tenth of the CPU of a
    streamed request (docs/benchmarks.md)."""

    __slots__ = (
        "_done",
        "_final",
        "_keep_usage_chunk",
        "_parser",
        "_provider",
        "_req",
        "generated",
        "usage",
    )

    def __init__(self, req: GatewayRequest, provider: str) -> None:
        self._parser = SSEParser()
        self._req = req
        self._provider = provider
        self._keep_usage_chunk = req.include_usage
        self._done = False
        self._final = False  # the usage chunk (no choices) arrived
        # Counted only if the upstream never reports usage (it was cut, or the client left).
        self.generated = Generated()
        self.usage: Usage | None = None

    def feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        for ev in self._parser.feed(data):
            chunk = self._event(ev.data)
            if chunk is not None:
                out.append(chunk)
        return out

    def _event(self, data: bytes) -> Chunk | None:
        if data == b"[DONE]":
            self._done = True
            return None
        if b'"usage":{' not in data and b'"error"' not in data:
            if data[:1] != b"{" or data[-1:] != b"}":
                raise UpstreamProtocolError(
                    f"provider {self._provider} sent a malformed stream event"
                )
            self.generated.add_raw(data)
            return Chunk(raw=data)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                f"provider {self._provider} sent a malformed stream event"
            ) from None
        if not isinstance(obj, dict):
            raise UpstreamProtocolError(f"provider {self._provider} sent a malformed stream event")
        if "error" in obj and "choices" not in obj:
            raise UpstreamUnavailable(
                f"provider {self._provider} failed mid-stream: {upstream_message(data)[:300]}"
            )
        self.generated.add_raw(data)  # raw, like the rest: the order of the text matters
        usage = obj.get("usage")
        if usage:
            # Some servers (vLLM's continuous usage stats) repeat a running count in every
            # chunk; the one without choices is the final count.
            self.usage = Usage.from_openai(usage)
            self._final = self._final or not obj.get("choices")
            if not obj.get("choices") and not self._keep_usage_chunk:
                return None
        return Chunk(obj, data)

    def close(self) -> list[Chunk]:
        out = [c for ev in self._parser.flush() if (c := self._event(ev.data)) is not None]
        # No usage from the upstream: left to partial_usage, which the executor runs in a
        # worker thread (the tokenizer stays off the event loop).
        if not self._done:
            raise UpstreamProtocolError(f"provider {self._provider} ended the stream before [DONE]")
        return out

    @property
    def completed(self) -> bool:
        return self._done

    def partial_usage(self, in_flight: bool) -> Usage:
        if self.usage is not None and (self._final or self._done):
            return self.usage
        return stream_usage(self._req.body, self.usage, self.generated, in_flight)
