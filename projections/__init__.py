"""Projections: one module each, discovered by name, so adding one is adding a file.

A projection module holds `NAME`, `VERSION`, `EVENT_TYPES`, `TABLE` (its tables, from
which the DDL is generated) and `apply(event) -> list[Change]`, a `match` on the event
type that says what the event changes. Modules whose names start with `_` are shared
machinery, not projections: `_tables` (how tables are described, and their DDL),
`_payloads` (msgspec Structs of the bodies), `_rules` (the ordering, list and phone
number rules),
`_changes` (payload -> change), `_state` (stored register versions), `_fold` (merging
changes into stored entities).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Protocol, cast

from projections._changes import Change
from projections._fold import Touched, write_changes
from projections._rules import phone_digits, phone_number_key
from projections._state import Fresh, decode_state, encode_state
from projections._tables import (
    POSTGRESQL_FUNCTIONS,
    ChildTable,
    Descriptions,
    EntityTable,
    Event,
    ForeignKey,
    HistoryTable,
    View,
)

if TYPE_CHECKING:
    from types import ModuleType

# The surface the runtime (app.projection) and the tests use; the modules behind it
# are private to the package.
__all__ = [
    "POSTGRESQL_FUNCTIONS",
    "Change",
    "ChildTable",
    "Descriptions",
    "EntityTable",
    "Event",
    "ForeignKey",
    "Fresh",
    "HistoryTable",
    "Projection",
    "Touched",
    "View",
    "decode_state",
    "discover",
    "encode_state",
    "phone_digits",
    "phone_number_key",
    "write_changes",
]


class Projection(Protocol):
    """The shape every projection module has."""

    NAME: str
    VERSION: int
    EVENT_TYPES: frozenset[str]
    TABLE: EntityTable

    def apply(self, event: Event) -> list[Change]:
        """What one event of `EVENT_TYPES` changes; raises if the event is unusable."""
        ...


def discover() -> list[Projection]:
    """Every projection module in this package, in name order."""
    modules: list[ModuleType] = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
        if not info.name.startswith("_")
    ]
    return [cast("Projection", module) for module in modules]
