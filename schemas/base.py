"""What every schema module shares: the frozen, strict base model and the common field types."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field

# Printable and bounded: no whitespace, control, zero-width or bidi-override characters, so an id can be logged,
# used as a Kafka key and compared without surprises; bounded so a hostile producer cannot bloat state.
IDENTIFIER_PATTERN = r"^[^\s\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+$"
CODE_PATTERN = r"^[a-z][a-z0-9_]*$"
Identifier = Annotated[str, Field(min_length=1, max_length=200, pattern=IDENTIFIER_PATTERN)]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=CODE_PATTERN)]

# What a failed pattern means, in words (errors name the field and this instead of a regular expression).
PATTERN_HINTS = {
    IDENTIFIER_PATTERN: "must be text without spaces, control or invisible characters",
    CODE_PATTERN: "must be a lower-case code of letters, digits and _ starting with a letter, e.g. page_view",
}
Money = Annotated[float, Field(ge=0, allow_inf_nan=False)]

ZERO = timedelta(0)
_new, _set = object.__new__, object.__setattr__  # bound once: Frozen.model_copy runs several times per event


def one_utc(value: datetime) -> datetime:
    """A zero offset as `datetime.UTC` itself, the object the core's own instants carry: two aware datetimes
    with different tzinfo objects (pydantic parses "Z" into its own) compare ten times slower, and the core
    compares event times on every step. Other offsets are kept as sent. Applied to events' `occurred_at` only:
    on the ~30 datetimes of a stored lead record it would add ~20 µs to reading it (measured), more than it saves."""
    if value.tzinfo is UTC or value.utcoffset() != ZERO:
        return value
    return value.replace(tzinfo=UTC)


class Frozen(BaseModel):
    """Base for our own messages: immutable, unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __eq__(self, other: object) -> bool:
        """BaseModel's equality, without its generic and ignored-key checks: a frozen model of ours holds only its
        fields in `__dict__`. Serializing without defaults compares the lead's nested models (its profile, ledger,
        BANT) with their defaults, on every table write: BaseModel's version cost ~1 µs each for an unequal pair."""
        if type(other) is not type(self):
            return super().__eq__(other)
        return (
            self.__dict__ == other.__dict__
            and (self.__pydantic_extra__ or {}) == (other.__pydantic_extra__ or {})
            and self.__pydantic_private__ == other.__pydantic_private__
        )

    # Not hashable itself: pydantic gives each frozen subclass its own hash, by value (tests/test_frozen.py).
    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def of_valid(cls, **values: Any) -> Self:
        """The model of values the core has built itself, every field given and each already of its field's type,
        without validating them again (a pending event, once per event: a third of its validated construction).
        Anything from outside goes through validation."""
        made = _new(cls)
        _set(made, "__dict__", values)
        _set(made, "__pydantic_fields_set__", set(values))
        _set(made, "__pydantic_extra__", None)
        _set(made, "__pydantic_private__", None)
        return made

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A shallow copy with `update` applied, as BaseModel.model_copy does (no validation), in about two thirds
        of its time: the core copies a lead's state several times per event. A frozen model with no extra fields and
        no private attributes has nothing else to copy; one with either is copied by pydantic."""
        if deep or self.__pydantic_private__ is not None or self.__pydantic_extra__ is not None:
            return super().model_copy(update=update, deep=deep)  # extras: lead data keeps custom attributes
        copied = _new(type(self))
        values = self.__dict__.copy()
        # The set of fields given is shared with the original while the update adds none (a frozen model never
        # changes it in place): a new one only for new fields.
        fields_set = self.__pydantic_fields_set__
        if update:
            values.update(update)
            if not update.keys() <= fields_set:
                fields_set = fields_set | update.keys()
        _set(copied, "__dict__", values)
        _set(copied, "__pydantic_fields_set__", fields_set)
        _set(copied, "__pydantic_extra__", None)
        _set(copied, "__pydantic_private__", None)
        return copied
