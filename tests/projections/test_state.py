"""The stored form of an entity's register versions: lossless, and one text per state."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections import ChildTable, EntityTable, decode_state, encode_state

TABLE = EntityTable(
    name="things",
    key="id",
    columns=(("a", "TEXT"), ("b", "NUMERIC"), ("c", "TEXT"), ("deleted_at", "TEXT")),
    children=(ChildTable("thing_parts", "thing_id", "parts", (("x", "TEXT"),)),),
)
REGISTERS = TABLE.registers
COLUMNS = [name for name, _ in TABLE.columns]

_values = st.one_of(st.none(), st.integers(), st.text(max_size=8))
_states = st.dictionaries(
    st.sampled_from(REGISTERS),
    st.tuples(_values, st.sampled_from(["", "001a", "001b", "002wh_x"])).map(list),
)


def _row(state: dict[str, list[Any]]) -> list[object]:
    """The entity's row as the table holds it: each column's value, NULL where unwritten."""
    return [state[name][0] if name in state else None for name in COLUMNS]


@given(_states)
def test_round_trip(state: dict[str, list[Any]]) -> None:
    """Versions come back from the state, column values from the row; child lists do not."""
    decoded = decode_state(REGISTERS, encode_state(REGISTERS, state), _row(state))
    expected = {
        name: [value if name in COLUMNS else None, version]
        for name, (value, version) in state.items()
    }
    assert decoded == expected


@given(_states)
def test_bytes_do_not_depend_on_insertion_order(state: dict[str, list[Any]]) -> None:
    """Equal states are equal bytes: `rebuild --check` compares the stored state tables."""
    reordered = dict(reversed(list(state.items())))
    assert encode_state(REGISTERS, reordered) == encode_state(REGISTERS, state)


def test_each_version_is_stored_once_and_no_value_is() -> None:
    """Registers written by one event share its version; the values stay in the row."""
    version = "0" * 60
    stored = encode_state(REGISTERS, {name: ["value-kept-in-row", version] for name in REGISTERS})
    assert stored.count(version.encode()) == 1
    assert b"value-kept-in-row" not in stored


def test_registers_outside_the_table_are_not_stored() -> None:
    """A register no column or child list holds has nothing to say about the rows."""
    state: dict[str, list[Any]] = {"a": ["x", "001a"]}
    assert encode_state(REGISTERS, {**state, "stray": [1, "009z"]}) == encode_state(
        REGISTERS, state
    )


def test_a_state_of_another_schema_is_refused() -> None:
    """Columns changed without a VERSION bump: a clear error, not a wrong row."""
    stored = encode_state(REGISTERS[:-1], {"a": ["x", "001a"]})
    with pytest.raises(ValueError, match="VERSION"):
        decode_state(REGISTERS, stored, _row({}))
