"""Deterministic embeddings.

A text's vector is the normalised sum of per-word pseudo-random vectors (each word's
vector seeded by a hash of the lowercased word; punctuation is ignored), so identical
texts give identical vectors, texts sharing most words are close, and unrelated texts
are nearly orthogonal: useful for exercising a semantic cache. Independent of the
simulator seed.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import struct
from functools import lru_cache

__all__ = ["embed", "encode_base64"]

_WORD_RE = re.compile(r"\w+")


@lru_cache(maxsize=16384)
def _word_vector(word: str, dims: int) -> tuple[float, ...]:
    seed = int.from_bytes(hashlib.sha256(f"{dims}|{word}".encode()).digest()[:16], "big")
    rng = random.Random(seed)
    gauss = rng.gauss
    return tuple(gauss(0.0, 1.0) for _ in range(dims))


def embed(text: str, dims: int) -> list[float]:
    """A unit vector of ``dims`` floats for ``text``."""
    words = [w.lower() for w in _WORD_RE.findall(text)] or [text]
    acc = [0.0] * dims
    for word in words:
        vec = _word_vector(word, dims)
        for i in range(dims):
            acc[i] += vec[i]
    norm = math.sqrt(sum(x * x for x in acc)) or 1.0
    # round-trip through float32 so JSON and base64 encodings agree
    packed = struct.pack(f"<{dims}f", *(x / norm for x in acc))
    return list(struct.unpack(f"<{dims}f", packed))


def encode_base64(vector: list[float]) -> str:
    """Little-endian float32 bytes, base64-encoded (OpenAI's ``encoding_format=base64``)."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
