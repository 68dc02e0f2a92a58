"""Semantic matching: answers for requests worded differently (docs/semantic-cache.md)."""
