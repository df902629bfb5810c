"""Ingest raw CSV/Parquet files into the offline store, validated against clv/contracts.py.

`validate` is pure: it splits a raw frame into accepted rows (contract columns, canonical
dtypes: strings, float64, `datetime64[us, UTC]`) and rejected rows (original values as strings,
the 1-based data-row number and one reason, the first that applies in `RejectReason` order).
`ingest` is the adapter: read a file, validate, write the quarantine file, merge the accepted
rows with the stored table (idempotent: rows already stored are skipped; a row with a line key,
customer_id + order_id + line_id, is the stored row with that key; customers are versioned, see
`clv.versions`) and write it back through `clv.store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.contracts import (
    CONTRACTS,
    TABLES,
    TS_DTYPE,
    Column,
    RejectReason,
    TableContract,
    TableName,
)
from clv.errors import DataError
from clv.personal import protect
from clv.settings import Settings
from clv.store import has_table, read_table, table_path, write_table
from clv.versions import merge_versions

REASONS: tuple[RejectReason, ...] = tuple(RejectReason)
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
ROW_NUMBER = "row_number"
REASON = "reason"


@dataclass(frozen=True, eq=False)
class Validation:
    """A raw frame split by the contract: what to store and what to quarantine (and why)."""

    table: TableName
    accepted: pd.DataFrame
    rejected: pd.DataFrame
    counts: dict[str, int]
    """Rejected rows per `RejectReason` value (only reasons that occurred)."""

    @property
    def read(self) -> int:
        return len(self.accepted) + len(self.rejected)


@dataclass(frozen=True)
class IngestResult:
    """What one ingest run did. read = accepted + already_present + superseded + quarantined."""

    table: TableName
    path: Path
    read: int
    accepted: int
    """Rows newly stored (for customers: new versions, or corrections of a stored one)."""
    already_present: int
    quarantined: dict[str, int]
    quarantine_path: Path | None
    stored_rows: int
    superseded: int = 0
    """customers only: earlier rows in the same file for the same customer and version time
    (valid_from, else the ingest instant)."""

    def as_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "path": str(self.path),
            "read": self.read,
            "accepted": self.accepted,
            "already_present": self.already_present,
            "superseded": self.superseded,
            "quarantined": dict(self.quarantined),
            "quarantine_path": str(self.quarantine_path) if self.quarantine_path else None,
            "stored_rows": self.stored_rows,
        }


@dataclass(frozen=True)
class TableStatus:
    """One stored table: its row count and time range (None when empty or not stored)."""

    table: TableName
    stored: bool
    rows: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None

    def as_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "stored": self.stored,
            "rows": self.rows,
            "start": self.start.isoformat() if self.start is not None else None,
            "end": self.end.isoformat() if self.end is not None else None,
        }


# --- pure: normalise and validate --------------------------------------------------------


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    """A timestamp in UTC; a naive one is taken as UTC."""
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _text(col: pd.Series) -> pd.Series:
    """Strings, stripped; empty -> missing."""
    s = col.astype("string").str.strip()
    return s.mask(s == "")


def _to_object(s: pd.Series) -> pd.Series:
    """A nullable string series as plain Python strings with None for missing (Parquet-friendly)."""
    out = s.astype(object)
    return out.where(s.notna(), None)


def _parse_ts(col: pd.Series) -> tuple[pd.Series, npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """(UTC microsecond timestamps, missing mask, unparseable mask). Naive values are UTC."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        parsed = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        missing = parsed.isna().to_numpy()
        return parsed.astype(TS_DTYPE), missing, np.zeros(len(col), dtype=bool)
    text = _text(col)
    missing = text.isna().to_numpy()
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    failed = parsed.isna().to_numpy() & ~missing
    if failed.any():
        # Common non-ISO forms ("01/31/2024 10:00", "Jan 5 2024"): slower, so only where needed.
        retry = pd.to_datetime(text[failed], utc=True, errors="coerce", format="mixed")
        parsed = parsed.copy()
        parsed[failed] = retry
        failed = parsed.isna().to_numpy() & ~missing
    return parsed.astype(TS_DTYPE), missing, failed


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


def _original_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.astype(object)
    return out.where(frame.notna(), "").astype(str)


def empty_table(table: TableName) -> pd.DataFrame:
    """A zero-row frame with the contract's columns and canonical dtypes."""
    dtypes = {
        "string": object,
        "category": object,
        "number": "float64",
        "timestamp": TS_DTYPE,
    }
    contract = CONTRACTS[table]
    return pd.DataFrame({c.name: pd.Series(dtype=dtypes[c.kind]) for c in contract.columns})


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
        raise DataError(
            f"{source}: missing required column {column.name!r}"
            + (f" (or {instead})" if instead else "")
            + f" for table {contract.name} (has: {', '.join(sorted(present)) or 'no columns'})"
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


def line_keyed(frame: pd.DataFrame, contract: TableContract) -> npt.NDArray[np.bool_] | None:
    """Rows identified by the contract's key (none of its columns missing), or None when the key
    is not narrower than the row (events) or the table is versioned (customers)."""
    if contract.versioned or set(contract.key) >= set(contract.names):
        return None
    return frame.loc[:, list(contract.key)].notna().all(axis=1).to_numpy()


AMOUNT_BOUND_FACTOR = 10_000.0
"""Default plausibility bound of |amount|: this many times the file's median nonzero |amount|
(a guard against 1e308 and unit mix-ups, far above any real order; not a modelling choice)."""


MIN_DATE = pd.Timestamp("1970-01-01", tz="UTC")
"""Default `ingest.min_date` (the Unix epoch: no real customer log starts before it)."""


@dataclass(frozen=True)
class Plausibility:
    """Bounds beyond which a value is quarantined rather than believed (`ingest` settings)."""

    min_date: pd.Timestamp = MIN_DATE
    max_abs_amount: float | None = None
    """None: AMOUNT_BOUND_FACTOR x the file's median nonzero |amount|."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Plausibility:
        return cls(_utc(pd.Timestamp(settings.ingest.min_date)), settings.ingest.max_abs_amount)

    def amount_bound(self, amount: pd.Series) -> float:
        if self.max_abs_amount is not None:
            return self.max_abs_amount
        size = amount.abs()
        size = size[np.isfinite(size) & (size > 0)]
        return float(size.median()) * AMOUNT_BOUND_FACTOR if len(size) else float("inf")


def validate(
    frame: pd.DataFrame,
    table: TableName,
    *,
    now: pd.Timestamp,
    bounds: Plausibility | None = None,
) -> Validation:
    """Split `frame` into accepted rows (canonical dtypes) and rejected rows with a reason.

    Exact duplicates are judged on the parsed contract columns (so "2024-01-01" and
    "2024-01-01T00:00:00Z" are the same time); the first occurrence is kept. So are rows that
    repeat the key of an earlier row with other values (`duplicate_line`: one order line).
    A missing amount is quantity x unit_price when both are given.
    """
    contract = CONTRACTS[table]
    frame = frame.rename(columns=lambda c: str(c).strip())
    check_columns(frame.columns, contract, source=table)
    n = len(frame)
    now_utc = _utc(now)
    limits = bounds if bounds is not None else Plausibility()
    flags: dict[RejectReason, npt.NDArray[np.bool_]] = {
        r: np.zeros(n, dtype=bool) for r in RejectReason
    }
    clean: dict[str, pd.Series] = {}
    missing_by: dict[str, npt.NDArray[np.bool_]] = {}
    for column in contract.inputs:
        raw = (
            frame[column.name].reset_index(drop=True)
            if column.name in frame.columns
            else pd.Series([None] * n, dtype=object)
        )
        if column.kind == "timestamp":
            values, missing, bad = _parse_ts(raw)
            flags[RejectReason.BAD_TIMESTAMP] |= bad
            future = (values > now_utc).fillna(False).to_numpy(dtype=bool)
            flags[RejectReason.FUTURE_TIMESTAMP] |= future
            early = (values < limits.min_date).fillna(False).to_numpy(dtype=bool)
            flags[RejectReason.BEFORE_MIN_DATE] |= early
            clean[column.name] = values
        elif column.kind == "number":
            values, missing, bad = _parse_number(raw)
            key = RejectReason.BAD_AMOUNT if column.name == "amount" else RejectReason.BAD_VALUE
            flags[key] |= bad
            clean[column.name] = values
        else:
            text = _text(raw)
            missing = text.isna().to_numpy()
            clean[column.name] = _to_object(text)
        missing_by[column.name] = missing
    for column in contract.inputs:
        if column.product_of:
            _fill_product(column, clean, missing_by)
    if "amount" in clean:
        amount = pd.to_numeric(clean["amount"], errors="coerce").astype("float64")
        bound = limits.amount_bound(amount)
        wild = amount.abs() > bound
        flags[RejectReason.IMPLAUSIBLE_AMOUNT] |= wild.fillna(False).to_numpy(dtype=bool)
    for column in contract.inputs:
        if column.name == "customer_id":
            flags[RejectReason.MISSING_ID] |= missing_by[column.name]
        elif column.required:
            flags[RejectReason.MISSING_VALUE] |= missing_by[column.name]

    normal = pd.DataFrame(clean)
    keyed = line_keyed(normal, contract)
    code = np.full(n, -1, dtype=np.int64)
    for k, reason in enumerate(REASONS):
        if reason is RejectReason.DUPLICATE:
            ok = code < 0
            dup = np.zeros(n, dtype=bool)
            dup[ok] = normal.loc[ok].duplicated(keep="first").to_numpy()
            code[dup] = k
        elif reason is RejectReason.DUPLICATE_LINE:
            if keyed is None:
                continue
            ok = (code < 0) & keyed
            dup = np.zeros(n, dtype=bool)
            dup[ok] = normal.loc[ok].duplicated(subset=list(contract.key), keep="first").to_numpy()
            code[dup] = k
        else:
            code[(code < 0) & flags[reason]] = k

    good = code < 0
    accepted = normal.loc[good].reset_index(drop=True)
    bad_rows = np.flatnonzero(~good)
    rejected = _original_as_text(frame.iloc[bad_rows].reset_index(drop=True))
    reasons = np.array([r.value for r in REASONS], dtype=object)[code[bad_rows]]
    rejected.insert(0, REASON, reasons)
    rejected.insert(0, ROW_NUMBER, bad_rows + 1)
    counts = {
        r.value: int(c)
        for r, c in zip(REASONS, np.bincount(code[bad_rows], minlength=len(REASONS)), strict=True)
        if c
    }
    return Validation(table=table, accepted=accepted, rejected=rejected, counts=counts)


def _row_hash(frame: pd.DataFrame, columns: tuple[str, ...]) -> npt.NDArray[np.uint64]:
    return pd.util.hash_pandas_object(frame.loc[:, list(columns)], index=False).to_numpy()


def canonical(frame: pd.DataFrame, table: TableName) -> pd.DataFrame:
    """A stored or accepted frame in the contract's column order and canonical dtypes."""
    out = empty_table(table)
    contract = CONTRACTS[table]
    data: dict[str, pd.Series] = {}
    for column in contract.columns:
        if column.name not in frame.columns:
            data[column.name] = pd.Series([None] * len(frame), dtype=out[column.name].dtype)
            continue
        s = frame[column.name].reset_index(drop=True)
        if column.kind == "timestamp":
            s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            data[column.name] = s.astype(TS_DTYPE)
        elif column.kind == "number":
            data[column.name] = s.astype("float64")
        else:
            data[column.name] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(data, columns=list(contract.names))


@dataclass(frozen=True, eq=False)
class Merge:
    """The stored table after adding accepted rows, and how many were new or already there."""

    frame: pd.DataFrame
    new: int
    already_present: int
    superseded: int


def merge(
    stored: pd.DataFrame, accepted: pd.DataFrame, table: TableName, *, now: pd.Timestamp
) -> Merge:
    """Add accepted rows to a stored table: skip rows already stored (a keyed row: its key is
    stored); customers are versioned (`clv.versions.merge_versions`), ingested at `now`."""
    contract = CONTRACTS[table]
    stored = canonical(stored, table)
    accepted = canonical(accepted, table)
    if contract.versioned:
        v = merge_versions(stored, accepted, ingested_at=_utc(now))
        return Merge(v.frame, v.new, v.already_present, v.superseded)
    names = contract.names
    present = np.isin(_row_hash(accepted, names), _row_hash(stored, names))
    keyed = line_keyed(accepted, contract)
    if keyed is not None and keyed.any():
        stored_keyed = line_keyed(stored, contract)
        assert stored_keyed is not None
        present[keyed] = np.isin(
            _row_hash(accepted.loc[keyed], contract.key),
            _row_hash(stored.loc[stored_keyed], contract.key),
        )
    fresh = accepted.loc[~present]
    parts = [p for p in (stored, fresh) if len(p)]
    merged = pd.concat(parts, ignore_index=True) if parts else stored
    merged = merged.sort_values("ts", kind="stable", ignore_index=True)
    return Merge(merged, len(fresh), int(present.sum()), 0)


# --- adapter: files and the offline store ------------------------------------------------


def infer_table(path: Path) -> TableName | None:
    """The table a file holds, from its name: `transactions.csv`, `events-2024-01.parquet`..."""
    stem = path.name.lower()
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for table in TABLES:
        if stem == table or (stem.startswith(table) and stem[len(table)] in "-_."):
            return table
    return None


def read_raw(path: Path) -> pd.DataFrame:
    """A raw file as a frame: CSV cells stay text (validation parses them), Parquet as stored."""
    name = path.name.lower()
    try:
        if name.endswith(CSV_SUFFIXES):
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
        if name.endswith(PARQUET_SUFFIXES):
            return pd.read_parquet(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot read ({first})") from exc
    raise DataError(f"{path}: unknown format {path.suffix!r}; use .csv or .parquet")


def _quarantine_path(settings: Settings, table: TableName) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = settings.quarantine_dir / f"{table}-{stamp}.csv"
    k = 1
    while path.exists():
        k += 1
        path = settings.quarantine_dir / f"{table}-{stamp}-{k}.csv"
    return path


def ingest(
    settings: Settings,
    path: Path | str,
    *,
    table: TableName | None = None,
    now: pd.Timestamp | None = None,
) -> IngestResult:
    """Validate one raw file into the offline store; bad rows go to a quarantine CSV."""
    source = Path(path)
    if not source.exists():
        raise DataError(f"{source}: no such file")
    if source.is_dir():
        raise DataError(f"{source} is a directory: use ingest_all (or `clv data ingest DIR`)")
    chosen = table or infer_table(source)
    if chosen is None:
        raise DataError(
            f"{source}: cannot tell the table from the file name; "
            f"pass --table {'|'.join(TABLES)}"
        )
    if chosen not in CONTRACTS:
        raise DataError(f"{source}: unknown table {chosen!r}; use {', '.join(TABLES)}")
    frame = protect(read_raw(source), settings)
    frame = frame.rename(columns=lambda c: str(c).strip())
    check_columns(frame.columns, CONTRACTS[chosen], source=str(source))
    instant = _utc(pd.Timestamp.now(tz="UTC") if now is None else now)
    result = validate(frame, chosen, now=instant, bounds=Plausibility.from_settings(settings))

    quarantine: Path | None = None
    if len(result.rejected):
        settings.quarantine_dir.mkdir(parents=True, exist_ok=True)
        quarantine = _quarantine_path(settings, chosen)
        result.rejected.to_csv(quarantine, index=False)

    stored = read_table(settings, chosen) if has_table(settings, chosen) else empty_table(chosen)
    merged = merge(stored, result.accepted, chosen, now=instant)
    if merged.new or not has_table(settings, chosen):
        write_table(settings, chosen, merged.frame)
    return IngestResult(
        table=chosen,
        path=source,
        read=result.read,
        accepted=merged.new,
        already_present=merged.already_present,
        quarantined=result.counts,
        quarantine_path=quarantine,
        stored_rows=len(merged.frame),
        superseded=merged.superseded,
    )


def raw_files(directory: Path, *, table: TableName | None = None) -> list[tuple[TableName, Path]]:
    """The raw files in a folder, customers first, then transactions, then events."""
    order = {"identities": 0, "customers": 1, "transactions": 2, "events": 3}
    found: list[tuple[TableName, Path]] = []
    for p in sorted(directory.iterdir()):
        if not p.is_file() or not p.name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
            continue
        t = infer_table(p)
        if t is not None and (table is None or t == table):
            found.append((t, p))
    return sorted(found, key=lambda tp: order[tp[0]])


def ingest_all(
    settings: Settings,
    path: Path | str,
    *,
    table: TableName | None = None,
    now: pd.Timestamp | None = None,
) -> tuple[IngestResult, ...]:
    """Ingest a file, or every raw table file in a folder (customers first)."""
    source = Path(path)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    if not source.is_dir():
        return (ingest(settings, source, table=table, now=now),)
    files = raw_files(source, table=table)
    if not files:
        raise DataError(f"{source}: no {' / '.join(TABLES)} .csv or .parquet files in this folder")
    return tuple(ingest(settings, p, table=t, now=now) for t, p in files)


def status(settings: Settings) -> tuple[TableStatus, ...]:
    """Rows and time range of every stored table."""
    out: list[TableStatus] = []
    for table in TABLES:
        if not has_table(settings, table):
            out.append(TableStatus(table, False, 0, None, None))
            continue
        col = {"customers": "signup_ts", "identities": "valid_from"}.get(table, "ts")
        times = pd.read_parquet(table_path(settings, table), columns=[col])[col]
        lo, hi = times.min(), times.max()
        out.append(
            TableStatus(
                table,
                True,
                len(times),
                None if pd.isna(lo) else pd.Timestamp(lo),
                None if pd.isna(hi) else pd.Timestamp(hi),
            )
        )
    return tuple(out)
