"""File rules of ingest: what needs the whole file (and the stored table), in DuckDB SQL.

The caller registers `staged`: the rows that passed the row rules (`clv.inputs.parse`: row_number,
the contract's columns, the original cells), one chunk after another, in memory or as
Parquet on disk; DuckDB spills above its memory limit, so a file of any length fits. In
order, for transactions:
1. Currency: rows in the workspace's currency stay; others are converted with
   `ingest.currency_rates`, or rejected `mixed_currency` without a rate.
2. Plausibility: |amount| above the bound (set, or AMOUNT_BOUND_FACTOR x the file's median
   nonzero |amount|) is `implausible_amount`.
3. Refunds: a row whose order id matches `ingest.cancellation_pattern`, or with a negative
   quantity, is a refund (negative amount, margin and quantity); `refund_of` names the order
   it refunds (the id without the pattern, or its own order) when that order has a positive
   row of the same customer in the file or the store.
4. Order lines: in a line-level file (`ingest.grain`), rows of one order without a line_id
   that are identical in every column are one line bought twice: summed, not dropped.
For a table whose rows happen during another's (`Within`: subscription_changes during their
subscription): a row before its subscription's start or after its end is `outside_subscription`;
a row of a subscription not stored (yet) is kept and counted (`unmatched`).
Then, for every table: exact duplicates (every contract column equal; the first row is kept)
are `exact_duplicate`; a keyed row repeating an earlier row's key with other values is
`duplicate_line`, except in a table of latest states (`updates`: subscriptions), where the last
row of a key is kept and the earlier, copies or not, are `superseded`. Against the stored table
(`match_stored`): a row equal to a stored row is unchanged; a keyed row whose key is stored with
other values replaces that row, or is quarantined `key_conflict` (`ingest.on_key_conflict`;
a table of latest states always replaces); rows without a key are judged whole.
Why these rules: docs/decisions/real-exports.md and docs/decisions/subscriptions.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import duckdb

from clv.core.contracts import CONTRACTS, RejectReason, TableName
from clv.inputs.parse import REASON, ROW_NUMBER

AMOUNT_BOUND_FACTOR = 10_000.0
"""Default plausibility bound of |amount|: this many times the file's median nonzero |amount|
(a guard against 1e308 and unit mix-ups, far above any real order; not a modelling choice)."""

LINE_HINTS = ("line_id", "sku", "quantity", "unit_price")
"""Columns that make a transactions file line-level under `ingest.grain: auto`."""

_SQL_TYPES = {"string": "VARCHAR", "category": "VARCHAR", "number": "DOUBLE", "boolean": "BOOLEAN"}
PARENT = "parent"
"""The view of the table a `Within` table's rows happen during (its stored rows)."""


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def sql_type(kind: str) -> str:
    return _SQL_TYPES.get(kind, "TIMESTAMPTZ")


@dataclass(frozen=True)
class FileRules:
    """The settings the file rules follow (from `ingest` settings, or a test)."""

    max_abs_amount: float | None = None
    grain: Literal["auto", "order", "line"] = "auto"
    cancellation_pattern: str | None = None
    currency: str | None = None
    rates: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Reconciled:
    """What the file rules did; the kept rows are in the temp table `candidates`."""

    counts: dict[str, int]
    """Rows rejected by a file rule, per reason."""
    summed: int
    """Identical lines of an order folded into the line before them."""
    refunds: int
    linked: int
    """Refunds whose original order was found (refund_of set)."""
    converted: int
    currency: str | None
    amount_bound: float | None
    line_level: bool
    superseded: int = 0
    """Rows of a table of latest states (`updates`) followed in the file by a row of their key."""
    unmatched: int = 0
    """Kept rows of a `Within` table whose key the other table does not hold (yet)."""


def _literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> object:
    row = con.execute(sql, params or []).fetchone()
    return None if row is None else row[0]


def stored_view(
    con: duckdb.DuckDBPyConnection, table: TableName, path: str | None, *, name: str = "stored"
) -> None:
    """`name`: the stored table's contract columns (missing ones null: an older store), or
    no rows when nothing is stored."""
    contract = CONTRACTS[table]
    have: set[str] = set()
    if path is not None:
        have = {
            r[0] for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?)", [path]).fetchall()
        }
    cols = ", ".join(
        (q(c.name) if c.name in have else f"NULL::{sql_type(c.kind)}") + f" AS {q(c.name)}"
        for c in contract.columns
    )
    if path is None:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS "
            f"SELECT {cols}, NULL::BIGINT AS _stored_row WHERE false"
        )
    else:
        source = f"read_parquet('{path.replace(chr(39), chr(39) * 2)}', file_row_number = true)"
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS "
            f"SELECT {cols}, file_row_number AS _stored_row FROM {source}"
        )


def _currency(
    con: duckdb.DuckDBPyConnection, rules: FileRules
) -> tuple[str | None, list[tuple[str, float]]]:
    """The workspace currency and the rate of each currency the rows may be in."""
    base = rules.currency.strip().upper() if rules.currency else None
    if base is None:
        base = _scalar(con, "SELECT currency FROM stored WHERE currency IS NOT NULL LIMIT 1")  # type: ignore[assignment]
    if base is None:
        base = _scalar(  # type: ignore[assignment]
            con,
            "SELECT upper(trim(currency)) AS c FROM staged WHERE currency IS NOT NULL "
            "GROUP BY c ORDER BY count(*) DESC, c LIMIT 1",
        )
    rates = [(str(k).strip().upper(), float(v)) for k, v in rules.rates.items()]
    if base is not None:
        rates = [r for r in rates if r[0] != base] + [(base, 1.0)]
    return base, rates


def reconcile(
    con: duckdb.DuckDBPyConnection,
    table: TableName,
    rules: FileRules,
    *,
    file_columns: tuple[str, ...],
    parent: str | None = None,
) -> Reconciled:
    """Apply the file rules to `staged` (and the view `stored`, see `stored_view`); `parent`:
    the stored file of the table the rows happen during (`Within`), None when there is none.

    Leaves the temp tables `candidates` (kept rows: row_number and the contract's columns, not
    yet checked against the store) and `rejects` (row_number, reason)."""
    contract = CONTRACTS[table]
    names = list(contract.names)
    con.execute(f"CREATE OR REPLACE TEMP TABLE rejects ({ROW_NUMBER} BIGINT, {REASON} VARCHAR)")
    summed = refunds = linked = converted = 0
    base: str | None = None
    bound: float | None = None
    line_level = False
    source = "staged"
    if table == "transactions":
        base, rates = _currency(con, rules)
        con.execute("CREATE OR REPLACE TEMP TABLE rates (code VARCHAR, rate DOUBLE)")
        if rates:
            con.executemany("INSERT INTO rates VALUES (?, ?)", rates)
        rate = "(CASE WHEN s.currency IS NULL THEN 1.0 ELSE r.rate END)"
        priced = {
            "amount": f"s.amount * {rate}",
            "margin": f"s.margin * {rate}",
            "unit_price": f"s.unit_price * {rate}",
            "currency": "CASE WHEN s.currency IS NULL THEN NULL ELSE "
            + (_literal(base) if base else "NULL")
            + " END",
        }
        columns = ", ".join(f"{priced.get(n, 's.' + q(n))} AS {q(n)}" for n in names)
        other = _literal(base or "")
        # Views, not tables, until the rows are linked: the staged file is read, not copied
        # (the original cells stay behind; only the quarantine needs them).
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW priced AS
            SELECT s.{ROW_NUMBER}, {columns},
                {rate} IS NULL AS _unpriced,
                coalesce(s.currency IS NOT NULL AND upper(trim(s.currency)) <> {other},
                    false) AND {rate} IS NOT NULL AS _converted
            FROM staged s LEFT JOIN rates r ON upper(trim(s.currency)) = r.code"""
        )
        con.execute(
            f"INSERT INTO rejects SELECT {ROW_NUMBER}, ? FROM priced WHERE _unpriced",
            [RejectReason.MIXED_CURRENCY.value],
        )
        converted = int(_scalar(con, "SELECT count(*) FROM priced WHERE _converted") or 0)  # type: ignore[call-overload]
        if rules.max_abs_amount is not None:
            bound = float(rules.max_abs_amount)
        else:
            median = _scalar(
                con,
                "SELECT median(abs(amount)) FROM priced "
                "WHERE NOT _unpriced AND amount IS NOT NULL AND amount <> 0",
            )
            bound = float("inf") if median is None else float(median) * AMOUNT_BOUND_FACTOR  # type: ignore[arg-type]
        con.execute(
            f"INSERT INTO rejects SELECT {ROW_NUMBER}, ? FROM priced "
            "WHERE NOT _unpriced AND abs(amount) > ?",
            [RejectReason.IMPLAUSIBLE_AMOUNT.value, bound],
        )
        pattern = _literal(rules.cancellation_pattern) if rules.cancellation_pattern else None
        cancel = f"coalesce(regexp_matches(order_id, {pattern}), false)" if pattern else "false"
        refunded = f"regexp_replace(order_id, {pattern}, '')" if pattern else "order_id"
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW signed AS
            SELECT * EXCLUDE (_unpriced, _converted, _cancel) REPLACE (
                CASE WHEN _cancel OR quantity < 0 THEN -abs(amount) ELSE amount END AS amount,
                CASE WHEN _cancel OR quantity < 0 THEN -abs(margin) ELSE margin END AS margin,
                CASE WHEN _cancel THEN -abs(quantity) ELSE quantity END AS quantity),
                CASE WHEN _cancel THEN {refunded} ELSE order_id END AS _refunded_order
            FROM (SELECT *, {cancel} AS _cancel FROM priced)
            WHERE NOT _unpriced AND NOT (abs(amount) > '{bound!r}'::DOUBLE)"""
        )
        con.execute(
            """CREATE OR REPLACE TEMP VIEW linked AS
            WITH orders AS (
                SELECT DISTINCT customer_id, order_id FROM signed
                WHERE amount > 0 AND order_id IS NOT NULL
                UNION
                SELECT DISTINCT customer_id, order_id FROM stored
                WHERE amount > 0 AND order_id IS NOT NULL)
            SELECT s.* EXCLUDE (_refunded_order) REPLACE (
                CASE WHEN s.amount < 0 THEN o.order_id END AS refund_of)
            FROM signed s LEFT JOIN orders o
              ON s.amount < 0 AND s.customer_id = o.customer_id
             AND s._refunded_order = o.order_id"""
        )
        line_level = _line_level(con, rules, file_columns)
        source = _sum_identical_lines(con, names) if line_level else "linked"
    if contract.within is not None:
        source = _within(con, table, source, parent)
    superseded = _deduplicate(con, table, source, line_level=line_level)
    unmatched = 0
    if contract.within is not None:
        key = q(contract.within.key)
        unmatched = int(
            _scalar(con, f"SELECT count(*) FROM candidates c ANTI JOIN spans p ON c.{key} = p._key")
            or 0  # type: ignore[call-overload]
        )
    if table == "transactions":
        row = con.execute(
            "SELECT coalesce(sum(_n) - count(*), 0), count(*) FILTER (WHERE amount < 0), "
            "count(*) FILTER (WHERE refund_of IS NOT NULL) FROM ranked"
        ).fetchone()
        assert row is not None
        summed, refunds, linked = (int(x) for x in row)
    counts = {
        str(reason): int(n)
        for reason, n in con.execute(
            f"SELECT {REASON}, count(*) FROM rejects GROUP BY 1"
        ).fetchall()
    }
    return Reconciled(
        counts=counts,
        summed=summed,
        refunds=refunds,
        linked=linked,
        converted=converted,
        currency=base,
        amount_bound=bound,
        line_level=line_level,
        superseded=superseded,
        unmatched=unmatched,
    )


def _within(
    con: duckdb.DuckDBPyConnection, table: TableName, source: str, parent: str | None
) -> str:
    """Rows of `source` at a time outside the span of their row of the other table go to
    `rejects` (`outside_subscription`); the view of the others, and `spans` (_key, _start,
    _end: NULL while open) of the other table's stored rows."""
    contract = CONTRACTS[table]
    within = contract.within
    assert within is not None
    stored_view(con, within.table, parent, name=PARENT)
    key, time = q(within.key), q(contract.time)
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW spans AS
        SELECT {key} AS _key, min({q(within.start)}) AS _start,
            CASE WHEN bool_or({q(within.end)} IS NULL) THEN NULL ELSE max({q(within.end)}) END
                AS _end
        FROM {PARENT} GROUP BY 1"""
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW spanned AS
        SELECT s.*, coalesce(s.{time} < p._start OR s.{time} > p._end, false) AS _outside
        FROM {source} s LEFT JOIN spans p ON s.{key} = p._key"""
    )
    con.execute(
        f"INSERT INTO rejects SELECT {ROW_NUMBER}, ? FROM spanned WHERE _outside",
        [RejectReason.OUTSIDE_SUBSCRIPTION.value],
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW inside AS SELECT * EXCLUDE (_outside) FROM spanned "
        "WHERE NOT _outside"
    )
    return "inside"


def _line_level(
    con: duckdb.DuckDBPyConnection, rules: FileRules, file_columns: tuple[str, ...]
) -> bool:
    if rules.grain != "auto":
        return rules.grain == "line"
    if any(c in file_columns for c in LINE_HINTS):
        return True
    differing = _scalar(
        con,
        """SELECT count(*) FROM (
            SELECT customer_id, order_id FROM (SELECT DISTINCT customer_id, order_id, ts, amount,
                margin, channel FROM linked WHERE order_id IS NOT NULL)
            GROUP BY customer_id, order_id HAVING count(*) > 1 LIMIT 1)""",
    )
    return bool(differing)


def _sum_identical_lines(con: duckdb.DuckDBPyConnection, names: list[str]) -> str:
    """Rows of one order without a line_id, identical in every column: one row, summed.

    `_summed` marks those rows: two of them can be equal after summing (A x1 twice and
    A x2 on one invoice) and both are lines, never exact duplicates."""
    summed = {"amount", "margin", "quantity"}
    keys = ", ".join(q(n) for n in names)
    out = ", ".join(f"sum({q(n)}) AS {q(n)}" if n in summed else q(n) for n in names)
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW lines AS
        SELECT min({ROW_NUMBER}) AS {ROW_NUMBER}, {out}, true AS _summed, count(*) AS _n
        FROM linked WHERE order_id IS NOT NULL AND line_id IS NULL
        GROUP BY {keys}
        UNION ALL BY NAME
        SELECT {ROW_NUMBER}, {keys}, false AS _summed, 1 AS _n FROM linked
        WHERE NOT (order_id IS NOT NULL AND line_id IS NULL)"""
    )
    return "lines"


def identity_key(
    table: TableName, *, line_level: bool, alias: str = ""
) -> tuple[str, list[str]] | None:
    """SQL of the key that decides a row's identity, or None when rows have no key (every
    column then identifies a row: the exact-duplicate rule): (condition that a row has a key,
    the key's expressions). Transactions: (customer_id, order_id, line_id, refund or not) of a
    row with an order id and a line id, or with an order id in an order-level file (the order's
    one row). Lines of a line-level file without a line_id have no key (summed or kept as
    lines). A refund is another row than the sale it refunds, even with its order's id."""
    contract = CONTRACTS[table]
    if contract.versioned or set(contract.key) >= set(contract.names):
        return None
    a = f"{alias}." if alias else ""
    if table != "transactions":
        has_key = " AND ".join(f"{a}{q(k)} IS NOT NULL" for k in contract.key)
        return has_key, [f"{a}{q(k)}" for k in contract.key]
    line = f"{a}line_id IS NOT NULL" if line_level else "true"
    return (
        f"({a}order_id IS NOT NULL AND {line})",
        [f"{a}customer_id", f"{a}order_id", f"coalesce({a}line_id, '')", f"({a}amount < 0)"],
    )


def _same(left: list[str], right: list[str]) -> str:
    """Equal keys, as column equalities (a hash join, where a row comparison may not be)."""
    return " AND ".join(f"{x} = {y}" for x, y in zip(left, right, strict=True))


def _deduplicate(
    con: duckdb.DuckDBPyConnection, table: TableName, source: str, *, line_level: bool
) -> int:
    """`ranked` (materialized once) and the view `candidates` from `source`: an exact
    duplicate repeats an earlier row; a keyed row repeating the key of an earlier row with
    other values is a duplicate line. Both go to `rejects`; the first row is kept. In a table
    of latest states (`updates`) the last row of a key is kept instead, and the earlier ones,
    copies or not, are superseded (not rejected): returns how many."""
    contract = CONTRACTS[table]
    every = ", ".join(q(n) for n in contract.names)
    summed, count = ("_summed", "_n") if source == "lines" else ("false", "1")
    key = identity_key(table, line_level=line_level)
    key_row = "NULL::BIGINT"
    if key is not None:
        has_key, parts = key
        kept = "max" if contract.updates else "min"
        window = f"{kept}({ROW_NUMBER}) OVER (PARTITION BY {', '.join(parts)}, ({has_key}))"
        key_row = f"CASE WHEN {has_key} THEN {window} END"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE ranked AS
        SELECT {ROW_NUMBER}, {every}, {count} AS _n,
            CASE WHEN {summed} THEN {ROW_NUMBER}
                 ELSE min({ROW_NUMBER}) OVER (PARTITION BY {every}, {summed}) END AS _first_row,
            {key_row} AS _key_row
        FROM {source}"""
    )
    rn = ROW_NUMBER
    if contract.updates:
        rejected = f"_key_row IS NULL AND _first_row < {rn}"
        kept_row = f"coalesce(_key_row = {rn}, _first_row = {rn})"
    else:
        rejected = f"_first_row < {rn} OR _key_row < {rn}"
        kept_row = f"_first_row = {rn} AND coalesce(_key_row = {rn}, true)"
    con.execute(
        f"""INSERT INTO rejects SELECT {rn}, CASE WHEN _first_row < {rn} THEN ? ELSE ? END
        FROM ranked WHERE {rejected}""",
        [RejectReason.DUPLICATE.value, RejectReason.DUPLICATE_LINE.value],
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW candidates AS SELECT {rn}, {every} FROM ranked "
        f"WHERE {kept_row}"
    )
    if not contract.updates:
        return 0
    return int(_scalar(con, f"SELECT count(*) FROM ranked WHERE _key_row <> {rn}") or 0)  # type: ignore[call-overload]


KeyPolicy = Literal["replace", "quarantine"]


@dataclass(frozen=True)
class StoreMatch:
    """How the candidates meet the stored rows (see `match_stored`)."""

    inserted: int
    """Candidates whose key (or, without a key, whole row) is not stored."""
    replaced: int
    """Candidates with a stored row's key and other values, stored in its place."""
    unchanged: int
    """Candidates equal to a stored row: nothing to store."""
    conflicts: int
    """Candidates with a stored row's key and other values, quarantined (`key_conflict`)."""


def match_stored(
    con: duckdb.DuckDBPyConnection, table: TableName, *, line_level: bool, policy: KeyPolicy
) -> StoreMatch:
    """Judge the candidates against `stored`. Leaves the temp table `fresh` (candidates to
    store: new keys, and under `replace` the rows that replace a stored one) and the view
    `kept` (the stored rows that stay: all but those replaced). Under `quarantine` a candidate
    whose key is stored with other values goes to `rejects` as `key_conflict`. A table of
    latest states (`updates`) is always under `replace`: a later state is no conflict."""
    contract = CONTRACTS[table]
    if contract.updates:
        policy = "replace"
    same_row = " AND ".join(f"c.{q(n)} IS NOT DISTINCT FROM s.{q(n)}" for n in contract.names)
    key = identity_key(table, line_level=line_level, alias="c")
    if key is None:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE fresh AS "
            f"SELECT c.*, false AS _replaces FROM candidates c ANTI JOIN stored s ON {same_row}"
        )
        con.execute("CREATE OR REPLACE TEMP VIEW kept AS SELECT * FROM stored")
    else:
        has_key, parts = key
        stored_has_key, stored_parts = identity_key(table, line_level=line_level, alias="s")  # type: ignore[misc]
        same_key = f"{_same(parts, stored_parts)} AND {stored_has_key}"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE matched AS
            SELECT c.*,
                EXISTS (SELECT 1 FROM stored s WHERE {same_key}) AS _key_stored,
                EXISTS (SELECT 1 FROM stored s WHERE {same_key} AND {same_row}) AS _same
            FROM candidates c WHERE {has_key}"""
        )
        con.execute(
            f"INSERT INTO rejects SELECT {ROW_NUMBER}, ? FROM matched "
            "WHERE _key_stored AND NOT _same AND ?",
            [RejectReason.KEY_CONFLICT.value, policy == "quarantine"],
        )
        replacing = "_key_stored AND NOT _same AND " + ("true" if policy == "replace" else "false")
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE fresh AS
            SELECT * EXCLUDE (_key_stored, _same), {replacing} AS _replaces FROM matched
            WHERE NOT _key_stored OR ({replacing})
            UNION ALL BY NAME
            SELECT c.*, false AS _replaces
            FROM (SELECT * FROM candidates c WHERE NOT ({has_key})) c
                ANTI JOIN stored s ON {same_row}"""
        )
        _, r_parts = identity_key(table, line_level=line_level, alias="r")  # type: ignore[misc]
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW kept AS SELECT s.* FROM stored s
            WHERE NOT ({stored_has_key} AND EXISTS (
                SELECT 1 FROM fresh r WHERE r._replaces AND {_same(r_parts, stored_parts)}))"""
        )
    row = con.execute(
        "SELECT (SELECT count(*) FROM candidates), count(*) FILTER (WHERE NOT _replaces), "
        "count(*) FILTER (WHERE _replaces) FROM fresh"
    ).fetchone()
    assert row is not None
    total, inserted, replaced = (int(x) for x in row)
    conflicts = int(
        _scalar(
            con,
            f"SELECT count(*) FROM rejects WHERE {REASON} = ?",
            [RejectReason.KEY_CONFLICT.value],
        )
        or 0  # type: ignore[call-overload]
    )
    return StoreMatch(
        inserted=inserted,
        replaced=replaced,
        unchanged=total - inserted - replaced - conflicts,
        conflicts=conflicts,
    )
