"""Standard Webhooks signing: secrets, message ids, the JSON body and the three headers.

Signing is delegated to the ``standardwebhooks`` reference package so receivers can
verify with any Standard Webhooks library (``Webhook(secret).verify(body, headers)``).
The signed content is ``{id}.{timestamp}.{body}``; the id stays the same across retries
of one delivery (receivers deduplicate on it) while the timestamp is each attempt's own,
because receivers reject timestamps more than five minutes old and a delivery may retry
for longer than that.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
# No '.' (the separator of the signed content) and nothing a header could trip over.
_WEBHOOK_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def generate_secret(nbytes: int = 32) -> str:
    """A new signing secret, ``whsec_`` + base64 of ``nbytes`` random bytes."""
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise ValueError(f"secret length must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes")
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode("ascii")


def load_secret(secret: str) -> Webhook:
    """Validate a ``whsec_<base64>`` secret; the error never echoes the secret itself."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secret must look like 'whsec_<base64>'")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not valid base64 after 'whsec_'") from None
    if not MIN_SECRET_BYTES <= len(raw) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"webhook secret must decode to {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes"
        )
    return Webhook(raw)


def new_webhook_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def check_webhook_id(webhook_id: str) -> str:
    if not isinstance(webhook_id, str) or not _WEBHOOK_ID.fullmatch(webhook_id):
        raise ValueError("webhook id must be 1-128 characters of [A-Za-z0-9_-]")
    return webhook_id


def build_body(event_type: str, data: dict[str, Any], when: datetime | None = None) -> bytes:
    """``{"type", "timestamp", "data"}`` as JSON bytes (Standard Webhooks payload shape)."""
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("webhook event type must be a non-empty string")
    stamp = (when or datetime.now(UTC)).astimezone(UTC)
    timestamp = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return orjson.dumps({"type": event_type, "timestamp": timestamp, "data": data})


def sign_headers(
    keys: Sequence[Webhook], webhook_id: str, body: bytes, when: datetime | None = None
) -> dict[str, str]:
    """The ``webhook-id``/``-timestamp``/``-signature`` headers for one attempt.

    Several keys give several space-separated ``v1,`` signatures, which is how Standard
    Webhooks rotates secrets: receivers accept any one that matches.
    """
    stamp = datetime.fromtimestamp(int((when or datetime.now(UTC)).timestamp()), UTC)
    text = body.decode("utf-8")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": " ".join(key.sign(webhook_id, stamp, text) for key in keys),
    }
