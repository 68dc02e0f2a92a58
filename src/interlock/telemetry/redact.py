"""Removal of secrets from any text that leaves the process (errors, logs, metrics)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Shapes of credentials that an upstream may echo back in an error message.
_PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-il-[A-Za-z0-9_\-]+|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{20,}"
    r"|Bearer\s+[A-Za-z0-9._\-]{8,}|https?://[^\s\"']+)"
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
