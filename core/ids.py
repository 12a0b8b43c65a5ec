"""Deterministic output ids: the same input always yields the same id, so redeliveries dedupe downstream."""

from hashlib import blake2b

# An output id is a 128-bit blake2b digest in hex (32 digits). A lead remembers the ids it emitted (core.decision)
# by their first 16 digits, a 64-bit digest: that two of the few hundred ids one lead ever compares share them has a
# probability of ~1e-15 (n^2 / 2^65), and its record stores half the digits, which do not compress.
SHORT_ID_LENGTH = 16


def output_id(*parts: str) -> str:
    return blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def short_id(oid: str) -> str:
    """The form in which a lead remembers an output id: the first 16 hex digits of an `output_id` (as is when
    already short, so records written before, with whole ids, compare equal); any other id is digested to 64 bits."""
    if len(oid) == 2 * SHORT_ID_LENGTH:
        return oid[:SHORT_ID_LENGTH]
    if len(oid) == SHORT_ID_LENGTH:
        return oid
    return blake2b(oid.encode(), digest_size=SHORT_ID_LENGTH // 2).hexdigest()
