"""What one event says about one entity: the registers it writes, flattened to columns."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, cast

import msgspec

from projections._payloads import Deleted
from projections._rules import carries_list, event_time, event_version, json_text

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from projections._tables import ChildTable, Event

Registers = dict[str, tuple[object, str]]


@dataclasses.dataclass(slots=True)
class Change:
    """What one event says about one entity."""

    key: str
    registers: Registers = dataclasses.field(default_factory=dict)
    deleted_at: str | None = None
    history: tuple[object, ...] | None = None
    # Set when every register carries this one version (an event's own fields): a change
    # newer than all of an entity's state then folds in as one dict update.
    version: str | None = None
    # The fields of an unexpected shape that the event still wrote by the shape rule
    # (`_payloads.LenientDecoder`): the runtime records them as a projection warning.
    odd: tuple[str, ...] = ()


_KEY_FIELD = frozenset({"id"})  # the entity's key, not a column
_deleted = msgspec.json.Decoder(Deleted)


def updated_entity(  # noqa: PLR0913 - the key, the payload and how it flattens
    key: str,
    updated_at: object,
    payload: msgspec.Struct,
    event: Event,
    *,
    nested: dict[str, str] | None = None,
    children: Sequence[ChildTable] = (),
    odd: tuple[str, ...] = (),
) -> Change:
    """What a `*.created` or `*.updated` event says of its entity: every field it carries.

    Every register carries the event's one version, (`updatedAt`, timestamp header,
    webhook id), and the change says so: the fold takes a change newer than the whole
    state in one update.
    """
    version = event_version(updated_at, event.event_timestamp, event.webhook_id)
    registers = carried(
        payload, version, event.event_type, skip=_KEY_FIELD, nested=nested, children=children
    )
    return Change(key, registers, version=version, odd=odd)


def deleted_entity(event: Event) -> Change:
    """What a `*.deleted` event says: its entity is deleted as of the event's time."""
    return Change(_deleted.decode(event.payload).id, deleted_at=event_time(event))


def carried(  # noqa: PLR0913 - keyword-only options of one flattening rule
    payload: msgspec.Struct,
    version: str,
    event_type: str,
    *,
    skip: frozenset[str] = frozenset(),
    nested: dict[str, str] | None = None,
    children: Sequence[ChildTable] = (),
) -> Registers:
    """The registers an event writes: every field it carries, flattened to columns.

    An absent field writes nothing; explicit null writes NULL; a nested object (named in
    `nested` with its column prefix) writes each of its leaves, and null writes all of
    them NULL; a list of objects becomes a child register; other lists become JSON text.
    """
    unset = msgspec.UNSET
    payload_type = type(payload)
    # Field names zipped with `astuple`, and the few skipped fields popped afterwards:
    # about a third cheaper than filtering `asdict` field by field, on every event.
    registers: Registers = {
        field: (value, version)
        for field, value in zip(
            payload_type.__struct_fields__, msgspec.structs.astuple(payload), strict=True
        )
        if value is not unset
    }
    for field in skip:
        registers.pop(field, None)
    for field in _composite_fields(payload_type):
        entry = registers.pop(field, None)
        if entry is None:
            continue
        value = entry[0]
        if nested and field in nested:
            _add_leaves(
                registers,
                value,
                version,
                payload_type=payload_type,
                field=field,
                prefix=nested[field],
            )
        elif isinstance(value, list):
            if not carries_list(event_type, value):
                continue
            child = next((c for c in children if c.register == field), None)
            if child is None:
                registers[field] = (json_text(value), version)
            else:
                registers[field] = (_child_rows(child, value), version)
        else:
            registers[field] = (value, version)
    return registers


def _add_leaves(  # noqa: PLR0913 - the registers to fill and what fills them
    registers: Registers,
    value: object,
    version: str,
    *,
    payload_type: type[msgspec.Struct],
    field: str,
    prefix: str,
) -> None:
    """Add the registers of a nested object's leaves; null writes every leaf NULL."""
    if value is None:
        for leaf in _nested_fields(payload_type, field):
            registers[prefix + leaf] = (None, version)
        return
    unset = msgspec.UNSET
    nested = cast("msgspec.Struct", value)
    leaves = msgspec.structs.astuple(nested)
    for column, leaf_value in zip(_prefixed(type(nested), prefix), leaves, strict=True):
        if leaf_value is not unset:
            registers[column] = (leaf_value, version)


@functools.cache
def _composite_fields(payload_type: type[msgspec.Struct]) -> frozenset[str]:
    """Fields that may hold a list or an object: the only ones needing more than a copy."""
    hint = msgspec.inspect.type_info(payload_type)
    assert isinstance(hint, msgspec.inspect.StructType)  # noqa: S101 - payload is a Struct
    return frozenset(
        info.name
        for info in hint.fields
        if any(
            isinstance(option, msgspec.inspect.ListType | msgspec.inspect.StructType)
            for option in _options(info.type)
        )
    )


@functools.cache
def _nested_fields(payload_type: type[msgspec.Struct], field: str) -> tuple[str, ...]:
    hint = msgspec.inspect.type_info(payload_type)
    assert isinstance(hint, msgspec.inspect.StructType)  # noqa: S101 - payload is a Struct
    for info in hint.fields:
        if info.name == field:
            for option in _options(info.type):
                if isinstance(option, msgspec.inspect.StructType):
                    return tuple(f.name for f in option.fields)
    return ()


@functools.cache
def _prefixed(leaf_type: type[msgspec.Struct], prefix: str) -> tuple[str, ...]:
    """The columns of a nested object's leaves, in the order of its fields."""
    return tuple(prefix + leaf for leaf in leaf_type.__struct_fields__)


def _options(info: msgspec.inspect.Type) -> Iterator[msgspec.inspect.Type]:
    if isinstance(info, msgspec.inspect.UnionType):
        yield from info.types
    else:
        yield info


def _child_rows(child: ChildTable, items: list[Any]) -> list[list[object]]:
    names = [name for name, _ in child.columns]
    unset = msgspec.UNSET
    return [
        [None if (v := getattr(item, name, None)) is unset else v for name in names]
        for item in items
    ]
