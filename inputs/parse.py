"""Row rules of ingest: parse one chunk of a raw file against its contract, row by row.

`parse_rows` is pure. Each row either parses (contract columns in canonical dtypes: strings,
float64, `datetime64[us, UTC]`, booleans; a month column as its month's first instant; a missing
cell of a column with a default as that default) or gets the first per-row `RejectReason` that
applies (a month is compared with `now` as a month: the current one is not in the future; a
column that cannot be negative is `negative_value` below 0; a category with choices is
`invalid_choice` outside them; a time before the one it cannot precede is `end_before_start`). Every
row keeps its 1-based data-row number and its original cells as text, so the rules that need
the whole file (`clv.inputs.reconcile`: currencies, the amount bound, refunds, order lines,
duplicates) can quarantine it later with what the file said.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from clv.core.contracts import (
    BOOLEAN_TEXT,
    CONTRACTS,
    TS_DTYPE,
    Column,
    RejectReason,
    TableContract,
    TableName,
)
from clv.core.errors import DataError
from clv.core.time import utc
from clv.inputs.timestamps import TimeRules, file_date_order, parse_times, stripped_text

ROW_NUMBER = "row_number"
REASON = "reason"
RAW = "raw__"
"""Prefix of the staged columns that hold a row's original cells as text."""

ROW_REASONS: tuple[RejectReason, ...] = (
    RejectReason.MISSING_ID,
    RejectReason.INVALID_ID,
    RejectReason.BAD_TIMESTAMP,
    RejectReason.AMBIGUOUS_DATE,
    RejectReason.UNKNOWN_TIMEZONE,
    RejectReason.FUTURE_TIMESTAMP,
    RejectReason.BAD_AMOUNT,
    RejectReason.BAD_VALUE,
    RejectReason.BAD_BOOLEAN,
    RejectReason.NEGATIVE_VALUE,
    RejectReason.INVALID_CHOICE,
    RejectReason.MISSING_VALUE,
    RejectReason.BEFORE_MIN_DATE,
    RejectReason.END_BEFORE_START,
)
"""The reasons one row shows by itself, in `RejectReason` order (the others need the file)."""

MIN_DATE = pd.Timestamp("1970-01-01", tz="UTC")
"""Default `ingest.min_date` (the Unix epoch: no real customer log starts before it)."""
MAX_ID_LENGTH = 256
"""Default `ingest.max_id_length`: far above real ids (a UUID has 36 characters, a hex
SHA-256 64), far below a pasted blob or a whole row that slid into one cell."""
_CONTROL = r"[\x00-\x1f\x7f-\x9f]"
"""Control characters (Unicode category Cc): a NUL or a newline inside an id."""

_ARROW = {
    "string": pa.string(),
    "category": pa.string(),
    "number": pa.float64(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "boolean": pa.bool_(),
}


_text = stripped_text


def _to_object(s: pd.Series) -> pd.Series:
    """A nullable string series as plain Python strings with None for missing (Parquet-friendly)."""
    out = s.astype(object)
    return out.where(s.notna(), None)


def _parse_number(
    col: pd.Series,
) -> tuple[pd.Series, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(float64 values, missing mask, non-numeric mask); infinities count as non-numeric."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = col.astype("float64")
        missing = values.isna().to_numpy()
        bad = ~np.isfinite(values.to_numpy()) & ~missing
        return values.where(~bad), missing, bad
    text = _text(col)
    missing = text.isna().to_numpy()
    values = pd.to_numeric(text, errors="coerce").astype("float64")
    bad = ~np.isfinite(values.to_numpy()) & ~missing
    return values.where(~bad), missing, bad


def _parse_boolean(
    col: pd.Series,
) -> tuple[pd.Series, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(True/False/None values, missing mask, not-a-boolean mask): `BOOLEAN_TEXT` in any case,
    a Parquet boolean, or the numbers 1 and 0."""
    if pd.api.types.is_bool_dtype(col.dtype) or pd.api.types.is_numeric_dtype(col.dtype):
        values = col.astype("float64")
        missing = values.isna().to_numpy()
        bad = ~values.isin([0.0, 1.0]).to_numpy() & ~missing
        out = (values == 1.0).astype(object).where(~(missing | bad), None)
        return out, missing, bad
    text = _text(col)
    missing = text.isna().to_numpy()
    mapped = text.str.lower().map(BOOLEAN_TEXT)
    bad = mapped.isna().to_numpy() & ~missing
    return mapped.astype(object).where(mapped.notna(), None), missing, bad


def _choice(text: pd.Series, choices: tuple[str, ...]) -> tuple[pd.Series, npt.NDArray[np.bool_]]:
    """(text as its choice, whatever the case; not-a-choice mask among the present cells)."""
    chosen = text.str.lower().map({c.lower(): c for c in choices})
    return chosen, (chosen.isna() & text.notna()).to_numpy(dtype=bool)


def original_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """A raw frame's cells as text ("" for missing), as the quarantine file shows them."""
    columns = {}
    for name in frame.columns:
        col = frame[name]
        if col.dtype == object and not col.isna().any():
            columns[name] = col  # CSV cells: already text (no conversion of every cell)
        else:
            columns[name] = col.astype(object).where(col.notna(), "").astype(str)
    return pd.DataFrame(columns, index=frame.index)


def empty_table(table: TableName) -> pd.DataFrame:
    """A zero-row frame with the contract's columns and canonical dtypes."""
    dtypes = {
        "string": object,
        "category": object,
        "number": "float64",
        "timestamp": TS_DTYPE,
        "boolean": bool,
    }
    contract = CONTRACTS[table]
    return pd.DataFrame({c.name: pd.Series(dtype=dtypes[c.kind]) for c in contract.columns})


def arrow_schema(table: TableName, raw_columns: tuple[str, ...] = ()) -> pa.Schema:
    """The staged rows' schema: row number, the contract's columns, the original cells."""
    fields = [pa.field(ROW_NUMBER, pa.int64())]
    fields += [pa.field(c.name, _ARROW[c.kind]) for c in CONTRACTS[table].columns]
    fields += [pa.field(RAW + c, pa.string()) for c in raw_columns]
    return pa.schema(fields)


def check_columns(columns: pd.Index, contract: TableContract, *, source: str) -> None:
    """Raise DataError naming the source and the first missing required column (a column that
    is the product of others may be absent when they are all there)."""
    present = {str(c) for c in columns}
    for column in contract.inputs:
        if not column.required or column.name in present:
            continue
        if column.product_of and all(c in present for c in column.product_of):
            continue
        instead = " and ".join(repr(c) for c in column.product_of)
        # Name only the contract's columns: without a header row, the "columns" are the
        # first row's cells, and those may be personal data.
        known = sorted(present & set(contract.names))
        others = len(present) - len(known)
        has = ", ".join(known) or "none of its columns"
        if others:
            has += f"; {others} other column{'s' if others != 1 else ''}"
        hint = "" if known else "; is the header row missing?"
        raise DataError(
            f"{source}: missing required column {column.name!r}"
            + (f" (or {instead})" if instead else "")
            + f" for table {contract.name} (has: {has}{hint})"
        )


def _fill_product(
    column: Column, clean: dict[str, pd.Series], missing: dict[str, npt.NDArray[np.bool_]]
) -> None:
    """Where `column` is missing and every factor of `column.product_of` parsed: the product."""
    fill = missing[column.name].copy()
    product = pd.Series(1.0, index=clean[column.name].index)
    for factor in column.product_of:
        fill &= clean[factor].notna().to_numpy()
        product = product * clean[factor]
    if fill.any():
        clean[column.name] = clean[column.name].where(~fill, product)
        missing[column.name] = missing[column.name] & ~fill


@dataclass(frozen=True, eq=False)
class ParsedRows:
    """One chunk split by the row rules."""

    valid: pd.DataFrame
    """row_number, the contract's columns (canonical dtypes), RAW + each file column."""
    rejected: pd.DataFrame
    """row_number, reason, RAW + each file column."""


def parse_rows(
    frame: pd.DataFrame,
    table: TableName,
    *,
    now: pd.Timestamp,
    min_date: pd.Timestamp = MIN_DATE,
    first_row: int = 1,
    row_numbers: npt.NDArray[np.int64] | None = None,
    times: TimeRules = TimeRules(),
    max_id_length: int = MAX_ID_LENGTH,
) -> ParsedRows:
    """Parse a raw chunk whose first data row is number `first_row` (or whose rows are numbered
    `row_numbers`; columns already checked).

    A missing amount is quantity x unit_price when both parsed."""
    contract = CONTRACTS[table]
    n = len(frame)
    now_utc = utc(now)
    flags = {r: np.zeros(n, dtype=bool) for r in ROW_REASONS}
    clean: dict[str, pd.Series] = {}
    missing_by: dict[str, npt.NDArray[np.bool_]] = {}
    # Without an amount column, a bad quantity or unit price is a bad amount.
    derived_from = {f for c in contract.inputs if c.name not in frame.columns for f in c.product_of}
    for column in contract.inputs:
        if column.name not in frame.columns:  # absent: missing everywhere, nothing to parse
            clean[column.name] = _absent(column, n)
            missing_by[column.name] = np.ones(n, dtype=bool)
            continue
        raw = frame[column.name].reset_index(drop=True)
        if column.kind == "timestamp":
            ts = parse_times(raw, times)
            values = month_start(ts.values) if column.month else ts.values
            missing = ts.missing
            flags[RejectReason.BAD_TIMESTAMP] |= ts.bad
            flags[RejectReason.AMBIGUOUS_DATE] |= ts.ambiguous
            flags[RejectReason.UNKNOWN_TIMEZONE] |= ts.unknown_zone
            future = (values > now_utc).fillna(False).to_numpy(dtype=bool)
            flags[RejectReason.FUTURE_TIMESTAMP] |= future
            early = (values < min_date).fillna(False).to_numpy(dtype=bool)
            flags[RejectReason.BEFORE_MIN_DATE] |= early
            clean[column.name] = values
        elif column.kind == "number":
            values, missing, bad = _parse_number(raw)
            of_amount = column.name == "amount" or column.name in derived_from
            key = RejectReason.BAD_AMOUNT if of_amount else RejectReason.BAD_VALUE
            flags[key] |= bad
            if column.nonnegative:
                flags[RejectReason.NEGATIVE_VALUE] |= (values < 0).to_numpy(dtype=bool)
            clean[column.name] = values
        elif column.kind == "boolean":
            values, missing, bad = _parse_boolean(raw)
            flags[RejectReason.BAD_BOOLEAN] |= bad
            clean[column.name] = values
        else:
            text = _text(raw)
            missing = text.isna().to_numpy()
            if column.name.endswith("_id"):
                flags[RejectReason.INVALID_ID] |= _invalid_id(text, max_id_length)
            if column.choices:
                text, invalid = _choice(text, column.choices)
                flags[RejectReason.INVALID_CHOICE] |= invalid
            clean[column.name] = _to_object(text)
        missing_by[column.name] = missing
    for column in contract.inputs:
        if column.product_of:
            _fill_product(column, clean, missing_by)
        if column.default is not None:
            _fill_default(column, clean, missing_by)
        if column.not_before is not None:
            earlier = (clean[column.name] < clean[column.not_before]).fillna(False)
            flags[RejectReason.END_BEFORE_START] |= earlier.to_numpy(dtype=bool)
    for column in contract.inputs:
        if column.name == "customer_id":
            flags[RejectReason.MISSING_ID] |= missing_by[column.name]
        elif column.required:
            flags[RejectReason.MISSING_VALUE] |= missing_by[column.name]
    for column in contract.columns:
        if column.source == "ingest":
            clean[column.name] = _absent(column, n)

    code = np.full(n, -1, dtype=np.int64)
    for k, reason in enumerate(ROW_REASONS):
        code[(code < 0) & flags[reason]] = k
    numbers = (
        np.arange(first_row, first_row + n, dtype=np.int64) if row_numbers is None else row_numbers
    )
    raw_text = original_as_text(frame.reset_index(drop=True)).add_prefix(RAW)
    good = code < 0
    valid = pd.DataFrame(clean).loc[good].reset_index(drop=True)
    valid.insert(0, ROW_NUMBER, numbers[good])
    valid = pd.concat([valid, raw_text.loc[good].reset_index(drop=True)], axis=1)
    reasons = np.array([r.value for r in ROW_REASONS], dtype=object)[code[~good]]
    rejected = raw_text.loc[~good].reset_index(drop=True)
    rejected.insert(0, REASON, reasons)
    rejected.insert(0, ROW_NUMBER, numbers[~good])
    return ParsedRows(valid=valid, rejected=rejected)


def month_start(values: pd.Series) -> pd.Series:
    """UTC timestamps as the first instant of their UTC month (NaT stays NaT)."""
    naive = values.dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    first = naive.astype("datetime64[M]").astype("datetime64[us]")
    return pd.Series(first, index=values.index).dt.tz_localize("UTC").astype(TS_DTYPE)


def _fill_default(
    column: Column, clean: dict[str, pd.Series], missing: dict[str, npt.NDArray[np.bool_]]
) -> None:
    """Where `column` is missing: its default (a bad cell stays bad: it is not missing)."""
    fill = missing[column.name]
    values = clean[column.name].where(~fill, column.default)
    clean[column.name] = values.astype(bool) if column.kind == "boolean" else values
    missing[column.name] = np.zeros(len(fill), dtype=bool)


def _absent(column: Column, n: int) -> pd.Series:
    """A column the file does not have: missing in every row, in the canonical dtype."""
    if column.kind == "timestamp":
        return pd.Series(pd.NaT, index=range(n), dtype=TS_DTYPE)
    if column.kind == "number":
        return pd.Series(np.nan, index=range(n), dtype="float64")
    return pd.Series(np.full(n, None, dtype=object))


def _invalid_id(text: pd.Series, max_length: int) -> npt.NDArray[np.bool_]:
    """Ids holding a control character or longer than `max_length` characters."""
    bad = text.str.contains(_CONTROL) | (text.str.len() > max_length)
    return bad.fillna(False).to_numpy(dtype=bool)


def parse_in_file_order(
    frame: pd.DataFrame,
    table: TableName,
    *,
    times: TimeRules,
    whole_file: Callable[[], Iterable[pd.DataFrame]],
    now: pd.Timestamp,
    min_date: pd.Timestamp = MIN_DATE,
    row_numbers: npt.NDArray[np.int64] | None = None,
    max_id_length: int = MAX_ID_LENGTH,
) -> tuple[ParsedRows, TimeRules]:
    """`parse_rows`, deciding the day-month order from `whole_file` (its chunks, read again) the
    first time a chunk holds numeric dates of unknown order; the rules to parse later chunks by.
    A file whose order stays unknown quarantines those rows (ambiguous_date)."""

    def parse(rules: TimeRules) -> ParsedRows:
        return parse_rows(
            frame,
            table,
            now=now,
            min_date=min_date,
            row_numbers=row_numbers,
            times=rules,
            max_id_length=max_id_length,
        )

    parsed = parse(times)
    unknown = (parsed.rejected[REASON] == RejectReason.AMBIGUOUS_DATE.value).any()
    if times.dayfirst is not None or times.decided or not unknown:
        return parsed, times
    stamps = [c.name for c in CONTRACTS[table].inputs if c.kind == "timestamp"]
    columns = (chunk[c] for chunk in whole_file() for c in stamps if c in chunk.columns)
    decided = replace(times, dayfirst=file_date_order(columns), decided=True)
    return (parse(decided) if decided.dayfirst is not None else parsed), decided
