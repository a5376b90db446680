"""The projection tables as PostgreSQL tables, and their values as PostgreSQL values.

Decisions:
- **Tables and types** come from the projections' own descriptions
  (`projections.discover()`), so a new column or projection needs no change here:
  `NUMERIC` stays `numeric`, `INTEGER` becomes `bigint`, a column named `*_at` becomes
  `timestamptz`, a column the description lists in `json_columns` becomes `jsonb`, the
  rest `text`. Primary keys and the description's indexes are the same as in SQLite.
  The projections' hidden register state (`_state_*`) is not published.
- **Values PostgreSQL cannot take never fail a batch or drop a row**: that value is
  written as NULL (a `timestamptz` that is not ISO 8601, an amount that is not a finite
  number within `numeric`'s range), as a JSON string of the text (`jsonb` that is not
  valid JSON, so nothing is lost), or with U+FFFD in place of what PostgreSQL's text
  cannot hold (NUL, lone surrogates); each is counted and logged by table and column,
  never with the value, which may be personal data. A timestamp is read exactly as the
  projections read instants (`datetime.fromisoformat`, no offset meaning UTC), so what
  the mirror can order, PostgreSQL holds. The SQLite tables keep the original text.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from psycopg import sql

if TYPE_CHECKING:
    import collections
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from projections import Projection


# numeric's limits: digits before and after the decimal point.
_NUMERIC_INTEGER_DIGITS = 131072
_NUMERIC_SCALE = 16383
_BIGINT = 2**63


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """A published column: its PostgreSQL type and whether it may be NULL."""

    name: str
    pg_type: str
    not_null: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class PublishedTable:
    """One projection table as PostgreSQL holds it."""

    projection: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    def column(self, name: str) -> Column:
        """The column called `name`."""
        return next(c for c in self.columns if c.name == name)


def pg_type(name: str, declared: str, json_columns: frozenset[str] = frozenset()) -> str:
    """The PostgreSQL type of a projection column, from its SQLite declaration and name."""
    base = declared.split(maxsplit=1)[0].upper() if declared.strip() else "TEXT"
    if name in json_columns:
        return "jsonb"
    if name.endswith("_at"):
        return "timestamptz"
    if base == "NUMERIC":
        return "numeric"
    if "INT" in base:
        return "bigint"
    if base in {"REAL", "FLOAT", "DOUBLE"}:
        return "double precision"
    return "text"


def _columns(
    declared: Iterable[tuple[str, str]], json_columns: frozenset[str], primary_key: Sequence[str]
) -> tuple[Column, ...]:
    return tuple(
        Column(
            name,
            pg_type(name, kind, json_columns),
            not_null=name in primary_key or "NOT NULL" in kind.upper(),
        )
        for name, kind in declared
    )


def published_tables(projections: Iterable[Projection]) -> list[PublishedTable]:
    """Every table the projections show their users, in the projections' order."""
    tables: list[PublishedTable] = []
    for projection in projections:
        entity = projection.TABLE
        key = (entity.key,)
        tables.append(
            PublishedTable(
                projection=projection.NAME,
                name=entity.name,
                columns=(
                    Column(entity.key, "text", not_null=True),
                    *_columns(entity.columns, entity.json_columns, key),
                ),
                primary_key=key,
                indexes=entity.indexes,
            )
        )
        for child in entity.children:
            child_key = (child.parent_column, "position")
            tables.append(
                PublishedTable(
                    projection=projection.NAME,
                    name=child.name,
                    columns=(
                        Column(child.parent_column, "text", not_null=True),
                        Column("position", "bigint", not_null=True),
                        *_columns(child.columns, child.json_columns, child_key),
                    ),
                    primary_key=child_key,
                )
            )
        if entity.history:
            history = entity.history
            tables.append(
                PublishedTable(
                    projection=projection.NAME,
                    name=history.name,
                    columns=_columns(history.columns, frozenset(), history.primary_key),
                    primary_key=history.primary_key,
                )
            )
    return tables


def table_ddl(table: PublishedTable, schema: str) -> list[sql.Composed]:
    """CREATE statements for one published table and its indexes in `schema`."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name),
            sql.SQL(c.pg_type),
            sql.SQL(" NOT NULL" if c.not_null else ""),
        )
        for c in table.columns
    )
    statements = [
        sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
            sql.Identifier(schema, table.name), columns, identifiers(table.primary_key)
        )
    ]
    statements.extend(
        # The same names as SQLite's indexes (`EntityTable.ddl`).
        sql.SQL("CREATE INDEX {} ON {} ({})").format(
            sql.Identifier(f"{table.name}_by_{'_'.join(cols)}"),
            sql.Identifier(schema, table.name),
            identifiers(cols),
        )
        for cols in table.indexes
    )
    return statements


def identifiers(names: Iterable[str]) -> sql.Composed:
    """Column names quoted for a statement, comma-separated."""
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


# --- Values ----------------------------------------------------------------------------


class UnreadableError(ValueError):
    """A value PostgreSQL's column type cannot hold."""


def _clean_text(text: str) -> str:
    # PostgreSQL's text holds neither NUL nor unpaired surrogates (SQLite and JSON can).
    if text.isascii():  # the common case, checked at C speed
        if "\x00" in text:
            raise _AlteredError(text.replace("\x00", "\ufffd"))
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
        if "\x00" in text:
            text = text.replace("\x00", "\ufffd")
        raise _AlteredError(text) from None
    if "\x00" in text:
        raise _AlteredError(text.replace("\x00", "\ufffd"))
    return text


class _AlteredError(UnreadableError):
    """A text written with U+FFFD in place of what PostgreSQL cannot hold."""

    def __init__(self, text: str) -> None:
        super().__init__("altered")
        self.text = text


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return _clean_text(value)
    # What SQLite's TEXT affinity would have made of a number: its JSON spelling.
    return _clean_text(json.dumps(value, ensure_ascii=False))


def _decimal_in_range(number: Decimal) -> Decimal:
    if not number.is_finite():
        raise UnreadableError("not finite")
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int):  # pragma: no cover - finite numbers have an int one
        raise UnreadableError("not finite")
    if number.adjusted() >= _NUMERIC_INTEGER_DIGITS or -exponent > _NUMERIC_SCALE:
        raise UnreadableError("out of numeric's range")
    return number


def _as_numeric(value: object) -> int | Decimal:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        # Python refuses to print an int past 4300 digits; numeric's limit is larger.
        return int(_decimal_in_range(Decimal(value)))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnreadableError("not finite")
        # repr: the shortest text that reads back as the same float, as JSON sent it.
        return _decimal_in_range(Decimal(repr(value)))
    if isinstance(value, str):
        try:
            return _decimal_in_range(Decimal(value.strip()))
        except InvalidOperation:
            raise UnreadableError("not a number") from None
    raise UnreadableError("not a number")


def _as_bigint(value: object) -> int:
    if isinstance(value, bool):
        return int(value)
    number: int
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value.strip())
    else:
        raise UnreadableError("not an integer")
    if not -_BIGINT <= number < _BIGINT:
        raise UnreadableError("out of bigint's range")
    return number


def _as_double(value: object) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise UnreadableError("not a number") from None
    raise UnreadableError("not a number")


def _as_timestamptz(value: object) -> dt.datetime:
    # The same reading as the projections' `parse_instant` (projections/_rules.py).
    if not isinstance(value, str):
        raise UnreadableError("not a timestamp")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise UnreadableError("not a timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _reject_constant(name: str) -> object:
    raise UnreadableError(name)


def _check_json(value: object) -> None:
    # What Python's json accepts and jsonb refuses: \u0000, lone surrogates, numbers
    # beyond numeric. Iterative: a deeply nested value must not exhaust the stack.
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _clean_text(item)
        elif isinstance(item, Decimal):
            _decimal_in_range(item)
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())


def _as_jsonb(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    try:
        parsed = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        _check_json(parsed)
    except (ValueError, RecursionError):
        # Kept as a JSON string of the text: nothing is lost, and jsonb accepts it.
        try:
            cleaned = _clean_text(text)
        except _AlteredError as altered:
            cleaned = altered.text
        raise _AlteredError(json.dumps(cleaned)) from None
    return text


_CONVERTERS: dict[str, Callable[[object], object]] = {
    "text": _as_text,
    "numeric": _as_numeric,
    "bigint": _as_bigint,
    "double precision": _as_double,
    "timestamptz": _as_timestamptz,
    "jsonb": _as_jsonb,
}


def convert(column: Column, value: object) -> tuple[object, bool]:
    """The value PostgreSQL stores for `value` in `column`, and whether it is the value sent.

    Never raises: what the column's type cannot hold becomes NULL, or the closest value
    it can hold (see the module's docstring).
    """
    if value is None:
        return None, True
    try:
        return _CONVERTERS[column.pg_type](value), True
    except _AlteredError as altered:
        return altered.text, False
    except UnreadableError:
        return None, False


ConversionPlan = tuple[
    list[tuple[str, "Callable[[object], object]"]],
    list[tuple[str, "Callable[[object], object]", int]],
]


def conversion_plan(table: PublishedTable) -> ConversionPlan:
    """Per key column its converter; per column its converter and its place in the key.

    The hot loop of a bulk load looks converters up once per table, not once per value.
    """
    keys = [(name, _CONVERTERS[table.column(name).pg_type]) for name in table.primary_key]
    columns = [
        (
            c.name,
            _CONVERTERS[c.pg_type],
            table.primary_key.index(c.name) if c.name in table.primary_key else -1,
        )
        for c in table.columns
    ]
    return keys, columns


def converted_row(
    table: str,
    plan: list[tuple[str, Callable[[object], object], int]],
    source: Mapping[str, Any],
    key: list[object],
    unreadable: collections.Counter[str],
) -> tuple[object, ...]:
    """A row's values converted for COPY; what cannot be converted counted in `unreadable`.

    A value PostgreSQL cannot hold becomes NULL or its altered text, never a lost row.
    """
    values: list[object] = []
    for name, converter, key_index in plan:
        if key_index >= 0:
            values.append(key[key_index])
            continue
        raw = source.get(name)
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(converter(raw))
        except _AlteredError as altered:
            values.append(altered.text)
            unreadable[f"{table}.{name}"] += 1
        except UnreadableError:
            values.append(None)
            unreadable[f"{table}.{name}"] += 1
    return tuple(values)
