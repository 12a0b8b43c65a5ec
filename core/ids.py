"""Deterministic output ids: the same input always yields the same id, so redeliveries dedupe downstream."""

from hashlib import blake2b


def output_id(*parts: str) -> str:
    return blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()
