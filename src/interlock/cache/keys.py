"""Exact-match cache keys: a hash of the normalised request, inside a tenant namespace.

The whole request counts — every message, tools, response_format and every sampling
parameter — except the few fields that cannot change the answer (how it is delivered,
who asked). Unknown new fields count too: a field we do not understand can only make
a key more specific, never produce a wrong hit.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

# Delivery and bookkeeping only: a streamed and a plain request share an answer.
IGNORED_FIELDS = frozenset(
    {"model", "stream", "stream_options", "user", "metadata", "store", "service_tier"}
)


def request_digest(endpoint: str, body: dict[str, Any]) -> str:
    canon = {k: v for k, v in body.items() if k not in IGNORED_FIELDS}
    data = orjson.dumps([endpoint, canon], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


def cache_key(namespace: str, alias: str, endpoint: str, body: dict[str, Any]) -> str:
    """``namespace`` always names the tenant: entries never cross it."""
    return f"{namespace}|{alias}|{request_digest(endpoint, body)}"
