"""The stored form of an entity's registers: lossless, and one text per state."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from projections._fold import decode_state, encode_state

_values = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=8),
    st.lists(st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=4)), max_size=3)),
)
_states = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.tuples(_values, st.sampled_from(["", "001a", "001b", "002wh_x"])).map(list),
    max_size=12,
)


@given(_states)
def test_round_trip(state: dict[str, list[Any]]) -> None:
    """Decoding gives back every column's value and version."""
    assert decode_state(encode_state(state)) == state


@given(_states)
def test_text_does_not_depend_on_insertion_order(state: dict[str, list[Any]]) -> None:
    """Equal states are equal bytes: `rebuild --check` compares the stored state tables."""
    reordered = dict(reversed(list(state.items())))
    assert encode_state(reordered) == encode_state(state)


def test_each_version_is_stored_once() -> None:
    """Columns written by one event share its version instead of repeating it."""
    version = "0" * 60
    text = encode_state({f"column_{i}": [i, version] for i in range(20)})
    assert text.count(version.encode()) == 1
