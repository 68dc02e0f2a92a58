"""Virtual key format, hashing and verification (pure; no I/O).

A key reads ``sk-il-<key id, 12 chars>-<secret, 43 chars>``. Only the key id is stored in
the clear (it is the lookup index); the secret is stored as
HMAC-SHA256(pepper, salt || secret) with a random per-key salt and a pepper that lives
outside the database, so a copy of the database alone cannot be used to test guesses.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "sk-il-"
_ID_LEN = 12
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret: str
    salt: str
    hash: str

    @property
    def token(self) -> str:
        return f"{PREFIX}{self.key_id}-{self.secret}"


def new_key(pepper: bytes) -> NewKey:
    key_id = "".join(secrets.choice(_ALPHABET) for _ in range(_ID_LEN))
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    return NewKey(key_id, secret, salt, hash_secret(pepper, salt, secret))


def hash_secret(pepper: bytes, salt: str, secret: str) -> str:
    return hmac.new(pepper, salt.encode() + b"\x00" + secret.encode(), hashlib.sha256).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` of a well-formed token, else None."""
    if not token.startswith(PREFIX) or len(token) < len(PREFIX) + _ID_LEN + 2:
        return None
    rest = token[len(PREFIX) :]
    key_id, sep, secret = rest[:_ID_LEN], rest[_ID_LEN : _ID_LEN + 1], rest[_ID_LEN + 1 :]
    if sep != "-" or not secret or len(secret) > 128:
        return None
    return key_id, secret


def verify(pepper: bytes, salt: str, stored_hash: str, secret: str) -> bool:
    return hmac.compare_digest(hash_secret(pepper, salt, secret), stored_hash)


def fingerprint(token: str) -> bytes:
    """A cache key for a presented token that does not keep the token itself in memory."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
