"""Which model to load test when none was named: one the target actually serves.

``GET /v1/models`` lists names but not what each serves (an OpenAI model object has no
"chat" or "embeddings" field), so the candidates are taken in the target's own order,
names that read like the other kind last (``embed`` for chat; the reverse for
embeddings), and the first one that answers a one-token probe of the wanted kind with a
200 is used. The probe is one tiny request per candidate tried, sent before the run and
not counted in it; at most :data:`MAX_PROBES` candidates are tried.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Literal

__all__ = ["MAX_PROBES", "Discovered", "DiscoveryError", "discover_model", "list_models"]

Need = Literal["chat", "embeddings"]
MAX_PROBES = 8
_EMBED_NAME = re.compile(r"embed", re.IGNORECASE)
# Names no chat or embeddings request can use (OpenAI's own list carries these).
_NEITHER = re.compile(r"whisper|tts|dall-e|moderation|transcribe|image|audio|realtime", re.I)


class DiscoveryError(Exception):
    """No served model could be found; the message says what was tried."""


@dataclass(frozen=True)
class Discovered:
    model: str
    listed: int  # how many models /v1/models listed
    tried: tuple[tuple[str, str], ...]  # (model, why not) for candidates passed over

    def note(self, need: Need, base: str) -> str:
        skipped = (
            f"; passed over {', '.join(f'{m} ({why})' for m, why in self.tried)}"
            if self.tried
            else ""
        )
        return (f"--model not given: using {self.model!r}, the first {need} model "
                f"{base}/models lists ({self.listed} listed) that answered a probe{skipped}")  # fmt: skip


def _request(url: str, key: str | None, body: dict[str, object] | None,
             timeout: float) -> tuple[int, bytes]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")  # noqa: S310
    if key:
        req.add_header("authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - checked target
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def _why(status: int, body: bytes) -> str:
    try:
        err = json.loads(body)["error"]
        code = err.get("code") or err.get("type")
        return f"{status} {code}" if code else str(status)
    except (ValueError, KeyError, TypeError, AttributeError):
        return str(status)


def list_models(base: str, key: str | None, timeout: float = 10.0) -> list[str]:
    """The ids ``GET {base}/models`` lists (``base`` is the /v1 base)."""
    try:
        status, body = _request(base + "/models", key, None, timeout)
    except OSError as exc:
        raise DiscoveryError(f"cannot list models at {base}/models: {exc}") from None
    if status != 200:
        raise DiscoveryError(f"{base}/models answered {_why(status, body)}")
    try:
        data = json.loads(body)["data"]
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
    except (ValueError, KeyError, TypeError) as exc:
        raise DiscoveryError(f"{base}/models did not answer a model list: {exc}") from None


def discover_model(base: str, key: str | None, need: Need, timeout: float = 30.0) -> Discovered:
    """The first model the target serves for ``need`` (see the module docstring)."""
    listed = list_models(base, key, min(timeout, 10.0))
    usable = [m for m in listed if not _NEITHER.search(m)]
    looks_embed = [m for m in usable if _EMBED_NAME.search(m)]
    looks_chat = [m for m in usable if not _EMBED_NAME.search(m)]
    order = looks_chat + looks_embed if need == "chat" else looks_embed + looks_chat
    tried: list[tuple[str, str]] = []
    for model in order[:MAX_PROBES]:
        if need == "chat":
            path = "/chat/completions"
            body: dict[str, object] = {"model": model, "max_tokens": 1,
                                       "messages": [{"role": "user", "content": "ping"}]}  # fmt: skip
        else:
            path, body = "/embeddings", {"model": model, "input": "ping"}
        try:
            status, answer = _request(base + path, key, body, timeout)
        except OSError as exc:
            tried.append((model, type(exc).__name__))
            continue
        if status == 200:
            return Discovered(model, len(listed), tuple(tried))
        tried.append((model, _why(status, answer)))
    if not listed:
        raise DiscoveryError(f"{base}/models lists no model; pass --model")
    detail = ", ".join(f"{m} ({why})" for m, why in tried) or "no candidate"
    raise DiscoveryError(
        f"no model {base}/models lists answered a {need} probe ({detail}); pass "
        + ("--model" if need == "chat" else "--embed-model")
    )
