"""Removal of secrets from any text that leaves the process (errors, logs, metrics)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Shapes of credentials that an upstream may echo back in an error message.
_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-il-[A-Za-z0-9_\-]+|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{20,}"
    r"|Bearer\s+[A-Za-z0-9._\-]{8,}|whsec_[A-Za-z0-9+/=]{8,}|https?://[^\s\"']+)"
)


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if len(secret) >= 4 and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, "[redacted]")
        return _PATTERNS.sub("[redacted]", text)


# Only the credential shapes (no URLs): for messages that echo client input back to the
# client, e.g. an unknown model name that is really a pasted API key.
_KEY_SHAPES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{20,}"
    r"|Bearer\s+[A-Za-z0-9._\-]{8,}|whsec_[A-Za-z0-9+/=]{8,})"
)


def redact_key_shapes(text: str) -> str:
    return _KEY_SHAPES.sub("[redacted]", text)
