"""Payload pieces several event types share, and the one decoder every projection uses.

Every optional field defaults to `UNSET`, so "absent" (leave the column alone) and
`null` (set it NULL) stay different after decoding. `LenientDecoder` holds the shape
rule: one field of an unexpected type never drops its entity.
"""

from __future__ import annotations

import functools
import typing
from typing import Annotated, Any, Generic, NamedTuple, TypeVar

import msgspec
from msgspec import UNSET, Struct, UnsetType

Text = str | UnsetType | None
# SQLite's INTEGER is 64 bits: a larger whole number cannot be stored as a number, so it
# has an unexpected type like any other (and is kept as its JSON text).
Integer = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Amount = Integer | float | UnsetType | None


class PostalAddress(Struct, rename="camel"):
    """An address as BitByBit sends it: a customer's addresses, an order's shipping."""

    first_name: Text = UNSET
    last_name: Text = UNSET
    phone: Text = UNSET
    address1: Text = UNSET
    address2: Text = UNSET
    city: Text = UNSET
    province: Text = UNSET
    country: Text = UNSET
    zip: Text = UNSET


class Deleted(Struct):
    """The body of `customer.deleted` and `product.deleted`: the id alone."""

    id: str


S = TypeVar("S", bound=Struct)


class Decoded(NamedTuple, Generic[S]):
    """A payload decoded by the shape rule, and what in it did not have its expected type."""

    value: S
    # One sentence per odd field (`media: a str where a list was expected, ...`).
    odd: tuple[str, ...] = ()


class LenientDecoder(Generic[S]):
    """Decodes a payload so that one field of an unexpected shape never drops the entity.

    The shape rule of every projection, kept here so that it is one rule: a value whose
    type its column does not expect is stored as its JSON text (the Open API's products
    carry `media` as one URL string, where webhooks send a list); a list of child rows
    that is not a list of objects writes nothing, leaving the child rows as they were; a
    nested object that is not an object leaves its columns alone, and an odd leaf in it is
    JSON text like any other value. Every other field is decoded as usual, and each odd
    field is named in `Decoded.odd`, for the event to be counted as a projection warning.
    A required field (the entity's key) has no column to hold JSON text: without it the
    event cannot name its entity, and it stays an error, as do a body that is not JSON
    and one that is not an object.

    A payload of the expected shape takes one msgspec decode, as before; only an odd one
    is decoded again field by field.
    """

    def __init__(self, struct_type: type[S]) -> None:
        self._type = struct_type
        self._strict = msgspec.json.Decoder(struct_type)

    def decode(self, payload: bytes) -> Decoded[S]:
        """The payload as `struct_type`, by the shape rule; raises when it names no entity."""
        try:
            return Decoded(self._strict.decode(payload))
        except msgspec.ValidationError as exc:
            raw = msgspec.json.decode(payload)
            if not isinstance(raw, dict):
                raise
            odd: list[str] = []
            value = _lenient_struct(self._type, raw, "", odd, exc)
            return Decoded(value, tuple(odd))


def _lenient_struct(
    struct_type: type[S],
    raw: dict[str, Any],
    prefix: str,
    odd: list[str],
    error: msgspec.ValidationError | None,
) -> S:
    """`raw` as `struct_type`, each field by the shape rule; `error` if a required one is odd."""
    values: dict[str, Any] = {}
    for name, wire, hint, required in _fields(struct_type):
        if wire not in raw:
            if required:
                raise error or msgspec.ValidationError(f"{prefix}{wire}: missing")
            continue
        value = raw[wire]
        try:
            values[name] = msgspec.convert(value, hint)
            continue
        except msgspec.ValidationError:
            if required:
                raise error or msgspec.ValidationError(f"{prefix}{wire}: unusable") from None
        values[name] = _odd_value(hint, value, prefix + wire, odd)
    return struct_type(**values)


def _odd_value(hint: object, value: object, path: str, odd: list[str]) -> object:
    """What an odd value writes: JSON text, a leniently decoded object, or nothing (`UNSET`)."""
    nested, child = _struct_options(hint)
    found = _json_type(value)
    if nested is not None:
        if isinstance(value, dict):
            return _lenient_struct(nested, value, f"{path}.", odd, None)
        odd.append(f"{path}: {found} where an object was expected; its columns left as they were")
        return UNSET
    if child is not None:
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return [_lenient_struct(child, item, f"{path}[].", odd, None) for item in value]
        odd.append(f"{path}: {found} where a list of objects was expected; rows left as they were")
        return UNSET
    odd.append(f"{path}: {found} of an unexpected type, stored as its JSON text")
    return msgspec.json.encode(value).decode()


@functools.cache
def _fields(struct_type: type[Struct]) -> tuple[tuple[str, str, Any, bool], ...]:
    """(attribute, name in the payload, type, required) of each field."""
    hints = typing.get_type_hints(struct_type, include_extras=True)
    info = msgspec.structs.fields(struct_type)
    return tuple((f.name, f.encode_name, hints[f.name], f.required) for f in info)


def _struct_options(hint: object) -> tuple[type[Struct] | None, type[Struct] | None]:
    """The nested object type, and the child row type of a list, that `hint` allows."""
    nested = child = None
    for option in typing.get_args(hint) or (hint,):
        if isinstance(option, type) and issubclass(option, Struct):
            nested = option
        elif typing.get_origin(option) is list:
            (item,) = typing.get_args(option) or (Any,)
            if isinstance(item, type) and issubclass(item, Struct):
                child = item
    return nested, child


def _json_type(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)
