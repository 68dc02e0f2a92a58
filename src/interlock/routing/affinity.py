"""Prompt-cache affinity: a conversation that extends an earlier prompt goes back to the
deployment that served that prompt, where the provider's prompt cache holds its prefix.

Providers cache prompt prefixes per deployment (OpenAI and Anthropic from ~1,024 tokens);
a follow-up turn routed elsewhere pays full input price again. For each served chat
request the digest of its whole prompt (model, tools, every message) is remembered with
the deployment; a later request whose message list starts with a remembered prompt
prefers that deployment. Only prefixes of at least ``min_tokens`` (estimated) count, so
a short shared system prompt does not pin all traffic to one deployment.

Interlock's own logic: a bounded LRU of digests (no library models "which upstream
holds this prefix").
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import orjson

MAX_PREFIXES = 64  # how many shorter prefixes of a request are looked up


class PromptAffinity:
    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._where: OrderedDict[str, str] = OrderedDict()  # prompt digest -> deployment

    @staticmethod
    def digests(alias: str, body: dict[str, Any], min_tokens: int) -> list[str]:
        """Digests of the request's prompt prefixes long enough to be cached, longest
        (the whole prompt) first."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return []
        h = hashlib.sha256(orjson.dumps([alias, body.get("tools")], option=orjson.OPT_SORT_KEYS))
        size = 0
        out: list[str] = []
        for msg in messages:
            data = orjson.dumps(msg, option=orjson.OPT_SORT_KEYS)
            h.update(data)
            size += len(data)
            if size // 4 >= min_tokens:  # ~4 bytes per token
                out.append(h.hexdigest())
        out.reverse()
        return out[: MAX_PREFIXES + 1]

    def preferred(self, digests: list[str]) -> str | None:
        """The deployment that served the longest earlier prompt this request extends."""
        for d in digests[1:]:  # [0] is this very prompt: not yet served
            dep = self._where.get(d)
            if dep is not None:
                self._where.move_to_end(d)
                return dep
        return None

    def served(self, digests: list[str], deployment: str) -> None:
        if not digests:
            return
        self._where[digests[0]] = deployment
        self._where.move_to_end(digests[0])
        while len(self._where) > self._max:
            self._where.popitem(last=False)
