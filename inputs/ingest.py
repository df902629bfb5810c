"""Ingest raw CSV/Parquet files into the offline store, validated against core/contracts.py.

A file (CSV, gzip CSV or Parquet; or a folder of parts of one table) is read in chunks of
`ingest.chunk_rows` rows. Each chunk has its personal columns pseudonymized (`clv.inputs.personal`)
and its rows parsed (`clv.inputs.parse`); the rows that parse are staged to Parquet in the
workspace. DuckDB then applies the rules that need the whole file and the stored table
(`clv.inputs.reconcile`: currencies, the amount bound, refunds, order lines, duplicates,
rows already stored), writes the quarantine file (original cells, 1-based data-row number and one
reason, the first that applies in `RejectReason` order) and the new stored table. Memory is bounded
by the chunk and DuckDB's limit (`compute.memory_budget_mb`; above it DuckDB spills to disk), not
by the file. Customers are versioned, not deduplicated by key (`clv.inputs.versions`); a
subscriptions row is its subscription's latest state, replacing the stored one.

`validate` runs the same rules on a frame in memory, without a store.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, overload

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clv.core.contracts import CONTRACTS, TABLES, TS_DTYPE, RejectReason, TableName
from clv.core.errors import DataError
from clv.core.settings import Settings
from clv.core.store import duckdb_connection, has_table, table_path
from clv.core.time import utc
from clv.inputs.commit import StoreWriter, staging_dir, store_writer
from clv.inputs.parse import (
    MIN_DATE,
    RAW,
    REASON,
    ROW_NUMBER,
    arrow_schema,
    check_columns,
    empty_table,
    original_as_text,
    parse_in_file_order,
)
from clv.inputs.personal import protect
from clv.inputs.raw_csv import Chunk, CsvFormat, csv_chunks, csv_header
from clv.inputs.reconcile import (
    AMOUNT_BOUND_FACTOR,
    FileRules,
    Reconciled,
    match_stored,
    q,
    reconcile,
    stored_view,
)
from clv.inputs.timestamps import TimeRules
from clv.inputs.versions import merge_versions

__all__ = [
    "AMOUNT_BOUND_FACTOR",
    "HINTS",
    "MIN_DATE",
    "FileOutcome",
    "IngestResult",
    "IngestRun",
    "Plausibility",
    "Validation",
    "canonical",
    "empty_table",
    "infer_table",
    "ingest",
    "ingest_all",
    "status",
    "validate",
]

REASONS: tuple[RejectReason, ...] = tuple(RejectReason)
CSV_SUFFIXES = (".csv", ".csv.gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
SOURCE_FILE = "source_file"
"""Quarantine column naming the part a row came from (folder ingests only)."""
HINTS: dict[str, str] = {
    RejectReason.AMBIGUOUS_DATE.value: "dates such as 01/02/2024 may be day or month first and "
    "the file does not say: set ingest.dayfirst (true: day first, false: month first) and "
    "ingest the quarantined rows again",
    RejectReason.UNKNOWN_TIMEZONE.value: "a time-zone name stands for several zones: write an "
    "offset (2024-01-05T10:00+05:30) instead",
    RejectReason.MALFORMED_ROW.value: "rows with more or fewer fields than the header: an "
    "unquoted comma or a cut line",
    RejectReason.INVALID_ENCODING.value: "rows holding bytes that are not text in "
    "ingest.encoding (default utf-8): re-export the file as UTF-8, or set ingest.encoding "
    "(latin-1, cp1252, ...)",
}
"""What to do about a reason, printed with the run's summary when it occurred."""


@dataclass(frozen=True)
class Plausibility:
    """Bounds beyond which a value is quarantined rather than believed (`ingest` settings)."""

    min_date: pd.Timestamp = MIN_DATE
    max_abs_amount: float | None = None
    """None: AMOUNT_BOUND_FACTOR x the file's median nonzero |amount|."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Plausibility:
        return cls(utc(pd.Timestamp(settings.ingest.min_date)), settings.ingest.max_abs_amount)


def time_rules(settings: Settings) -> TimeRules:
    """How the `ingest` settings ask timestamps to be read."""
    s = settings.ingest
    return TimeRules(dayfirst=None if s.dayfirst == "auto" else s.dayfirst, epoch_unit=s.epoch_unit)


def file_rules(settings: Settings, bounds: Plausibility | None = None) -> FileRules:
    """The file rules the `ingest` settings ask for."""
    s = settings.ingest
    return FileRules(
        max_abs_amount=bounds.max_abs_amount if bounds is not None else s.max_abs_amount,
        grain=s.grain,
        cancellation_pattern=s.cancellation_pattern,
        currency=s.currency,
        rates=dict(s.currency_rates),
    )


@dataclass(frozen=True)
class LineCounts:
    """What the transactions rules changed (zero for other tables)."""

    lines_summed: int = 0
    """Identical lines of one order summed into one stored line."""
    refunds: int = 0
    refunds_linked: int = 0
    converted: int = 0
    """Rows converted from another currency."""
    currency: str | None = None
    line_level: bool = False

    @classmethod
    def of(cls, r: Reconciled) -> LineCounts:
        return cls(r.summed, r.refunds, r.linked, r.converted, r.currency, r.line_level)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Validation:
    """A raw frame split by the contract: what to store and what to quarantine (and why)."""

    table: TableName
    accepted: pd.DataFrame
    rejected: pd.DataFrame
    counts: dict[str, int]
    """Rejected rows per `RejectReason` value (only reasons that occurred)."""
    lines: LineCounts = LineCounts()
    superseded: int = 0
    """Rows of a table of latest states (subscriptions) followed by a row of their key."""

    @property
    def read(self) -> int:
        return len(self.accepted) + len(self.rejected) + self.lines.lines_summed + self.superseded


@dataclass(frozen=True)
class IngestResult:
    """What one ingest of a table did.
    read = inserted + replaced + unchanged + superseded + quarantined + lines summed."""

    table: TableName
    path: Path
    read: int
    inserted: int
    """Rows newly stored (for customers: new versions)."""
    replaced: int
    """Rows stored in the place of a stored row with their key and other values (a corrected
    order or line; for customers, a correction of the version at the same time)."""
    unchanged: int
    """Rows equal to a stored row (or, for customers, to the version in force): not stored again."""
    quarantined: dict[str, int]
    quarantine_path: Path | None
    stored_rows: int
    superseded: int = 0
    """Earlier rows in the same file for the same entity: of customers, for the same customer
    and version time (valid_from, else the ingest instant); of subscriptions, for the same
    subscription_id (the last row is its latest state)."""
    lines: LineCounts = LineCounts()
    unmatched: int = 0
    """subscription_changes only: rows kept whose subscription is not stored (yet), so their
    time was not checked against its span."""

    def as_dict(self) -> dict[str, object]:
        return {
            "table": self.table,
            "path": str(self.path),
            "read": self.read,
            "inserted": self.inserted,
            "replaced": self.replaced,
            "unchanged": self.unchanged,
            "superseded": self.superseded,
            "unmatched": self.unmatched,
            "quarantined": dict(self.quarantined),
            "quarantine_path": str(self.quarantine_path) if self.quarantine_path else None,
            "stored_rows": self.stored_rows,
            **self.lines.as_dict(),
        }


Outcome = Literal["stored", "skipped", "failed", "not_stored"]


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file of an ingest: stored (its rows were judged and committed),
    skipped (not a table's file, with the reason), failed (the reason), or not stored (staged,
    then dropped because another file of the run failed)."""

    path: Path
    outcome: Outcome
    table: TableName | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "outcome": self.outcome,
            "table": self.table,
            "reason": self.reason,
        }

    def describe(self) -> str:
        words = {"not_stored": "not stored"}.get(self.outcome, self.outcome)
        return f"{self.path.name}: {words}" + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class IngestRun(Sequence[IngestResult]):
    """One ingest command: a result per table file (in ingest order) and every file's fate."""

    results: tuple[IngestResult, ...]
    files: tuple[FileOutcome, ...]

    @overload
    def __getitem__(self, i: int) -> IngestResult: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[IngestResult]: ...
    def __getitem__(self, i: int | slice) -> IngestResult | Sequence[IngestResult]:
        return self.results[i]

    def __len__(self) -> int:
        return len(self.results)

    @property
    def skipped(self) -> tuple[FileOutcome, ...]:
        return tuple(f for f in self.files if f.outcome == "skipped")


class IngestFailed(DataError):
    """A file of a run could not be ingested: nothing of the run was stored. The message is
    one line; `files` says what happened to every file (the CLI prints them before it)."""

    def __init__(self, message: str, files: tuple[FileOutcome, ...]) -> None:
        super().__init__(message)
        self.files = files


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
            s = pd.to_datetime(s, utc=True) if not hasattr(s, "dt") else s
            s = s.dt.tz_localize("UTC") if s.dt.tz is None else s.dt.tz_convert("UTC")
            data[column.name] = s.astype(TS_DTYPE)
        elif column.kind == "number":
            data[column.name] = s.astype("float64")
        elif column.kind == "boolean" and not s.isna().any():
            data[column.name] = s.astype(bool)
        else:
            data[column.name] = s.astype(object).where(s.notna(), None)
    return pd.DataFrame(data, columns=list(contract.names))


def _rename_raw(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns=lambda c: c[len(RAW) :] if c.startswith(RAW) else c)


def _sorted_rejects(con: duckdb.DuckDBPyConnection, raw_columns: list[str]) -> str:
    """SQL of every rejected row: row_number, reason, the original cells, by row number."""
    cells = ", ".join(f"s.{q(RAW + c)} AS {q(c)}" for c in raw_columns)
    early = ", ".join(f"{q(RAW + c)} AS {q(c)}" for c in raw_columns)
    return f"""SELECT {ROW_NUMBER}, {REASON}{", " + early if early else ""} FROM row_rejects
        UNION ALL
        SELECT r.{ROW_NUMBER}, r.{REASON}{", " + cells if cells else ""}
        FROM rejects r JOIN staged s ON r.{ROW_NUMBER} = s.{ROW_NUMBER}
        ORDER BY {ROW_NUMBER}"""


def _counts(row_counts: dict[str, int], file_counts: dict[str, int]) -> dict[str, int]:
    """Rejected rows per reason, in `RejectReason` order."""
    return {
        r.value: row_counts.get(r.value, 0) + file_counts.get(r.value, 0)
        for r in REASONS
        if row_counts.get(r.value, 0) + file_counts.get(r.value, 0)
    }


def validate(
    frame: pd.DataFrame,
    table: TableName,
    *,
    now: pd.Timestamp,
    bounds: Plausibility | None = None,
    rules: FileRules | None = None,
    times: TimeRules | None = None,
) -> Validation:
    """Split `frame` into accepted rows (canonical dtypes) and rejected rows with a reason, by
    the same row and file rules as `ingest` (without a store).

    Exact duplicates are judged on the parsed contract columns (so "2024-01-01" and
    "2024-01-01T00:00:00Z" are the same time); the first occurrence is kept. So are rows that
    repeat the key of an earlier row with other values (`duplicate_line`: one order line).
    A missing amount is quantity x unit_price when both are given.
    """
    contract = CONTRACTS[table]
    frame = frame.rename(columns=lambda c: str(c).strip())
    check_columns(frame.columns, contract, source=table)
    limits = bounds if bounds is not None else Plausibility()
    chosen = rules if rules is not None else FileRules(max_abs_amount=limits.max_abs_amount)
    parsed, _ = parse_in_file_order(
        frame,
        table,
        times=times if times is not None else TimeRules(),
        whole_file=lambda: (frame,),
        now=now,
        min_date=limits.min_date,
    )
    raw_columns = [str(c) for c in frame.columns]
    con = duckdb_connection()
    try:
        schema = arrow_schema(table, tuple(raw_columns))
        con.register(
            "staged", pa.Table.from_pandas(parsed.valid, schema=schema, preserve_index=False)
        )
        rejected_schema = pa.schema(
            [pa.field(ROW_NUMBER, pa.int64()), pa.field(REASON, pa.string())]
            + [pa.field(RAW + c, pa.string()) for c in raw_columns]
        )
        con.register(
            "row_rejects",
            pa.Table.from_pandas(parsed.rejected, schema=rejected_schema, preserve_index=False),
        )
        stored_view(con, table, None)
        done = reconcile(con, table, chosen, file_columns=tuple(raw_columns))
        accepted = con.execute(
            f"SELECT * EXCLUDE ({ROW_NUMBER}) FROM candidates ORDER BY {ROW_NUMBER}"
        ).df()
        rejected = con.execute(_sorted_rejects(con, raw_columns)).df()
    finally:
        con.close()
    row_counts = parsed.rejected[REASON].value_counts().to_dict()
    rejected[ROW_NUMBER] = rejected[ROW_NUMBER].astype(np.int64)
    return Validation(
        table=table,
        accepted=canonical(accepted, table),
        rejected=rejected.reset_index(drop=True),
        counts=_counts({str(k): int(v) for k, v in row_counts.items()}, done.counts),
        lines=LineCounts.of(done) if table == "transactions" else LineCounts(),
        superseded=done.superseded,
    )


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


def _is_raw_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES)


def _skip_reason(path: Path) -> str | None:
    """Why a folder entry is not a part of a table (None: it is one)."""
    if path.name.startswith("."):
        return "hidden"
    if path.is_dir():
        return "a folder inside a table's folder"
    if not _is_raw_file(path):
        return "not a .csv, .csv.gz, .txt or .parquet file"
    return None


def _parts(folder: Path) -> tuple[list[Path], list[FileOutcome]]:
    """The parts of one table in a folder (CSV or Parquet files), and the entries skipped."""
    parts: list[Path] = []
    skipped: list[FileOutcome] = []
    for p in sorted(folder.iterdir()):
        reason = _skip_reason(p)
        if reason is None:
            parts.append(p)
        else:
            skipped.append(FileOutcome(p, "skipped", reason=reason))
    if not parts:
        raise DataError(f"{folder}: no .csv or .parquet parts in this folder")
    return parts, skipped


def csv_format(settings: Settings) -> CsvFormat:
    """How the `ingest` settings say CSV files are written."""
    return CsvFormat(encoding=settings.ingest.encoding, delimiter=settings.ingest.delimiter)


def _header(path: Path, fmt: CsvFormat) -> list[str]:
    name = path.name.lower()
    if not name.endswith(CSV_SUFFIXES + PARQUET_SUFFIXES):
        raise DataError(f"{path}: unknown format {path.suffix!r}; use .csv or .parquet")
    try:
        if name.endswith(CSV_SUFFIXES):
            return csv_header(path, fmt)
        return _data_columns(pq.ParquetFile(path).schema_arrow.names)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({_first_line(exc)})") from exc


def _data_columns(names: list[str]) -> list[str]:
    """A Parquet file's columns without the index pandas may have written with them."""
    return [str(c) for c in names if not re.fullmatch(r"__index_level_\d+__", str(c))]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_chunks(path: Path, rows: int, fmt: CsvFormat | None = None) -> Iterator[Chunk]:
    """A raw file in chunks of at most `rows` rows: CSV cells stay text (the row rules parse
    them; rows that do not fit the header are set aside), Parquet as stored."""
    name = path.name.lower()
    fmt = fmt or CsvFormat()
    try:
        if name.endswith(CSV_SUFFIXES):
            yield from csv_chunks(path, _header(path, fmt), rows, fmt)
            return
        if name.endswith(PARQUET_SUFFIXES):
            parquet = pq.ParquetFile(path)
            columns = _data_columns(parquet.schema_arrow.names)
            first = 1
            for batch in parquet.iter_batches(batch_size=rows, columns=columns):
                numbers = np.arange(first, first + batch.num_rows, dtype=np.int64)
                first += batch.num_rows
                yield Chunk(batch.to_pandas(), numbers)
            return
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({_first_line(exc)})") from exc
    raise DataError(f"{path}: unknown format {path.suffix!r}; use .csv or .parquet")


def read_raw(path: Path, fmt: CsvFormat | None = None) -> pd.DataFrame:
    """A whole raw file as one frame (small files and tests; ingest streams `read_chunks`)."""
    frames = [c.frame for c in read_chunks(path, 1 << 62, fmt)]
    return frames[0] if frames else pd.DataFrame(columns=_header(path, fmt or CsvFormat()))


def _quarantine_path(settings: Settings, table: TableName) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = settings.quarantine_dir / f"{table}-{stamp}.csv"
    k = 1
    while path.exists():
        k += 1
        path = settings.quarantine_dir / f"{table}-{stamp}-{k}.csv"
    return path


@dataclass(frozen=True)
class _Staged:
    read: int
    valid: Path
    rejected: Path
    raw_columns: list[str]


def _stage(
    settings: Settings, files: list[Path], table: TableName, *, now: pd.Timestamp, work: Path
) -> _Staged:
    """Read, protect and parse every chunk; stage parsed rows and row rejects to Parquet."""
    fmt = csv_format(settings)
    header = [c.strip() for c in _header(files[0], fmt)]
    for part in files[1:]:
        if [c.strip() for c in _header(part, fmt)] != header:
            raise DataError(f"{part}: its columns differ from {files[0].name}'s")
    check_columns(pd.Index(header), CONTRACTS[table], source=str(files[0]))
    raw_columns = [c for c in protect(pd.DataFrame(columns=header), settings).columns]
    if len(files) > 1:
        raw_columns.append(SOURCE_FILE)
    schema = arrow_schema(table, tuple(raw_columns))
    rejected_schema = pa.schema(
        [pa.field(ROW_NUMBER, pa.int64()), pa.field(REASON, pa.string())]
        + [pa.field(RAW + c, pa.string()) for c in raw_columns]
    )
    valid_path, rejected_path = work / "valid.parquet", work / "rejected.parquet"
    min_date = Plausibility.from_settings(settings).min_date
    times = time_rules(settings)
    read = 0

    def raw(chunk: pd.DataFrame, part: Path) -> pd.DataFrame:
        frame = protect(chunk, settings).rename(columns=lambda c: str(c).strip())
        if len(files) > 1:
            frame[SOURCE_FILE] = part.name
        return frame

    def whole_file() -> Iterable[pd.DataFrame]:
        for part in files:
            for again in read_chunks(part, settings.ingest.chunk_rows, fmt):
                yield again.frame.rename(columns=lambda c: str(c).strip())

    with (
        pq.ParquetWriter(valid_path, schema) as valid_out,
        pq.ParquetWriter(rejected_path, rejected_schema) as rejected_out,
    ):
        for part in files:
            offset = read  # rows of the earlier parts: a folder's rows are numbered through
            for chunk in read_chunks(part, settings.ingest.chunk_rows, fmt):
                frame, numbers = chunk.frame, offset + chunk.rows
                undecodable = chunk.undecodable
                if undecodable is not None:  # set aside before the row rules read them
                    frame, numbers = frame.loc[~undecodable], numbers[~undecodable]
                parsed, times = parse_in_file_order(
                    raw(frame, part),
                    table,
                    times=times,
                    whole_file=whole_file,
                    now=now,
                    min_date=min_date,
                    row_numbers=numbers,
                    max_id_length=settings.ingest.max_id_length,
                )
                read += len(chunk.frame) + len(chunk.malformed)
                valid_out.write_table(
                    pa.Table.from_pandas(parsed.valid, schema=schema, preserve_index=False)
                )
                rejects = [parsed.rejected]
                if len(chunk.malformed):
                    rejects.append(
                        _malformed(raw(chunk.malformed, part), offset + chunk.malformed_rows)
                    )
                if undecodable is not None:
                    rejects.append(
                        _malformed(
                            raw(chunk.frame.loc[undecodable], part),
                            offset + chunk.rows[undecodable],
                            RejectReason.INVALID_ENCODING,
                        )
                    )
                rejected_out.write_table(
                    pa.Table.from_pandas(
                        pd.concat(rejects, ignore_index=True),
                        schema=rejected_schema,
                        preserve_index=False,
                    )
                )
    return _Staged(read, valid_path, rejected_path, raw_columns)


def _malformed(
    frame: pd.DataFrame, numbers: np.ndarray, reason: RejectReason = RejectReason.MALFORMED_ROW
) -> pd.DataFrame:
    """Rows the reader set aside, as row rejects: they did not fit the header
    (`malformed_row`), or held bytes that are not text (`invalid_encoding`)."""
    out = original_as_text(frame.reset_index(drop=True)).add_prefix(RAW)
    out.insert(0, REASON, reason.value)
    out.insert(0, ROW_NUMBER, numbers.astype(np.int64))
    return out


def _sql_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


@dataclass(frozen=True)
class _Planned:
    """One table's file, or folder of parts, to ingest."""

    table: TableName
    source: Path
    parts: list[Path]


def _checked_table(source: Path, table: str | None) -> TableName:
    chosen = table or infer_table(source)
    if chosen is None:
        raise DataError(
            f"{source}: cannot tell the table from the file name; pass --table {'|'.join(TABLES)}"
        )
    if chosen not in CONTRACTS:
        raise DataError(f"{source}: unknown table {chosen!r}; use {', '.join(TABLES)}")
    return chosen


def _plan_one(source: Path, table: TableName | None) -> tuple[list[_Planned], list[FileOutcome]]:
    """A file, or a folder of parts of one table."""
    chosen = _checked_table(source, table)
    if not source.is_dir():
        return [_Planned(chosen, source, [source])], []
    parts, skipped = _parts(source)
    return [_Planned(chosen, source, parts)], skipped


def _plan(source: Path, table: TableName | None) -> tuple[list[_Planned], list[FileOutcome]]:
    """What a file or a folder holds: the tables to ingest (in INGEST_ORDER) and the entries
    skipped, each with its reason."""
    if not source.is_dir():
        return _plan_one(source, table)
    found = raw_files(source, table=table)
    if not found and (table is not None or source.name.lower() in TABLES):
        return _plan_one(source, table)
    if not found:
        raise DataError(f"{source}: no {' / '.join(TABLES)} .csv or .parquet files in this folder")
    used = {p for _, p in found}
    skipped = [
        FileOutcome(p, "skipped", reason=_folder_skip_reason(p, table))
        for p in sorted(source.iterdir())
        if p not in used
    ]
    planned: list[_Planned] = []
    for t, p in found:
        if p.is_dir():
            parts, inner = _parts(p)
            planned.append(_Planned(t, p, parts))
            skipped.extend(inner)
        else:
            planned.append(_Planned(t, p, [p]))
    return planned, skipped


def _folder_skip_reason(path: Path, table: TableName | None) -> str:
    if path.name.startswith("."):
        return "hidden"
    named = path.name.lower() in TABLES if path.is_dir() else infer_table(path) is not None
    if named:
        return f"not the {table} table (--table {table})"
    if path.is_dir():
        return f"a folder not named after a table ({', '.join(TABLES)})"
    if not _is_raw_file(path):
        return "not a .csv, .csv.gz, .txt or .parquet file"
    return f"its name does not start with a table's ({', '.join(TABLES)})"


def ingest(
    settings: Settings,
    path: Path | str,
    *,
    table: TableName | None = None,
    now: pd.Timestamp | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> IngestResult:
    """Validate one raw file (or a folder of parts of one table) into the offline store; bad
    rows go to a quarantine CSV."""
    source = Path(path)
    if not source.exists():
        raise DataError(f"{source}: no such file")
    planned, skipped = _plan_one(source, table)
    return _run(settings, source, planned, skipped, now=now, on_wait=on_wait).results[0]


def ingest_all(
    settings: Settings,
    path: Path | str,
    *,
    table: TableName | None = None,
    now: pd.Timestamp | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> IngestRun:
    """Ingest a file, a folder of table files (identities and customers first), or a folder of
    parts of one table (named by the table, or with `table`): all of it, or nothing.

    Every file is parsed and staged first; then, under the workspace's ingest lock
    (`clv.inputs.commit`), each table is judged against the store and the new tables are
    committed together. A failing file stores nothing of the run (`IngestFailed` says what
    became of each file)."""
    source = Path(path)
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    planned, skipped = _plan(source, table)
    return _run(settings, source, planned, skipped, now=now, on_wait=on_wait)


def _failure(
    source: Path,
    planned: list[_Planned],
    skipped: list[FileOutcome],
    failed: _Planned,
    exc: BaseException,
) -> IngestFailed:
    reason = _first_line(exc)
    for part in failed.parts:  # the message may start with the failing part's path
        reason = reason.removeprefix(f"{part}: ")
    reason = reason.removeprefix(f"{failed.source}: ")
    files = [
        FileOutcome(
            part,
            "failed" if p is failed else "not_stored",
            p.table,
            reason if p is failed else "another file of this ingest failed",
        )
        for p in planned
        for part in p.parts
    ] + skipped
    if len(files) == 1:  # one file: its own error, as it was
        return IngestFailed(str(exc), tuple(files))
    message = f"{source}: {failed.source.name} failed, nothing of this ingest was stored: {reason}"
    return IngestFailed(message, tuple(files))


def _run(
    settings: Settings,
    source: Path,
    planned: list[_Planned],
    skipped: list[FileOutcome],
    *,
    now: pd.Timestamp | None,
    on_wait: Callable[[str], None] | None,
) -> IngestRun:
    instant = utc(pd.Timestamp.now(tz="UTC") if now is None else now)
    work = staging_dir(settings)
    try:
        staged: list[_Staged] = []
        for i, p in enumerate(planned):
            (work / str(i)).mkdir()
            try:
                staged.append(_stage(settings, p.parts, p.table, now=instant, work=work / str(i)))
            except DataError as exc:  # a file's fault; a ConfigError is the workspace's: as is
                raise _failure(source, planned, skipped, p, exc) from None
        results: list[IngestResult] = []
        with store_writer(
            settings,
            what=str(source),
            timeout_seconds=settings.ingest.lock_timeout_seconds,
            on_wait=on_wait,
        ) as writer:
            for i, (p, s) in enumerate(zip(planned, staged, strict=True)):
                try:
                    results.append(
                        _reconcile_and_store(
                            settings, writer, p, s, now=instant, work=work / str(i)
                        )
                    )
                except DataError as exc:
                    raise _failure(source, planned, skipped, p, exc) from None
            writer.commit()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stored = [FileOutcome(part, "stored", p.table) for p in planned for part in p.parts]
    return IngestRun(tuple(results), tuple(stored + skipped))


def _reconcile_and_store(
    settings: Settings,
    writer: StoreWriter,
    planned: _Planned,
    staged: _Staged,
    *,
    now: pd.Timestamp,
    work: Path,
) -> IngestResult:
    """Judge one table's staged rows against the store as `writer` sees it; stage the new
    table and the quarantine file for the writer's commit."""
    table = planned.table
    stored_path = writer.current(table)
    con = duckdb_connection(
        memory_limit_mb=settings.compute.memory_budget_mb, temp_directory=work / "spill"
    )
    try:
        con.execute(
            f"CREATE TEMP VIEW staged AS SELECT * FROM read_parquet({_sql_path(staged.valid)})"
        )
        con.execute(
            f"CREATE TEMP VIEW row_rejects AS "
            f"SELECT * FROM read_parquet({_sql_path(staged.rejected)})"
        )
        stored_view(con, table, str(stored_path) if stored_path is not None else None)
        within = CONTRACTS[table].within
        parent = writer.current(within.table) if within is not None else None
        done = reconcile(
            con,
            table,
            file_rules(settings),
            file_columns=tuple(staged.raw_columns),
            parent=str(parent) if parent is not None else None,
        )
        versioned = CONTRACTS[table].versioned
        match = None
        if not versioned:
            match = match_stored(
                con, table, line_level=done.line_level, policy=settings.ingest.on_key_conflict
            )
            done_counts = {**done.counts}
            if match.conflicts:
                done_counts[RejectReason.KEY_CONFLICT.value] = match.conflicts
        else:
            done_counts = done.counts
        row_counts = {
            str(k): int(n)
            for k, n in con.execute(
                f"SELECT {REASON}, count(*) FROM row_rejects GROUP BY 1"
            ).fetchall()
        }
        counts = _counts(row_counts, done_counts)
        quarantine: Path | None = None
        if counts:
            quarantine = _quarantine_path(settings, table)
            con.execute(
                f"COPY ({_sorted_rejects(con, staged.raw_columns)}) "
                f"TO {_sql_path(writer.stage_file(quarantine))} (HEADER, DELIMITER ',')"
            )
        lines = LineCounts.of(done) if table == "transactions" else LineCounts()
        if versioned:
            return _store_versions(
                writer, planned, table, staged, con, counts, quarantine, now, stored_path
            )
        assert match is not None
        changed = bool(match.inserted or match.replaced) or stored_path is None
        stored_rows = _write_stored(con, writer, table, rewrite=changed)
    finally:
        con.close()
    return IngestResult(  # the file and where its rows went, then the counts
        table=table,
        path=planned.source,
        quarantine_path=quarantine,
        stored_rows=stored_rows,
        read=staged.read,
        inserted=match.inserted,
        replaced=match.replaced,
        unchanged=match.unchanged,
        quarantined=counts,
        superseded=done.superseded,
        lines=lines,
        unmatched=done.unmatched,
    )


def _write_stored(
    con: duckdb.DuckDBPyConnection, writer: StoreWriter, table: TableName, *, rewrite: bool
) -> int:
    """The kept stored rows then the fresh rows, by time, as the table's next version (staged
    for the writer's commit)."""
    contract = CONTRACTS[table]
    if not rewrite:
        return int(con.execute("SELECT count(*) FROM kept").fetchone()[0])  # type: ignore[index]
    names = ", ".join(q(n) for n in contract.names)
    order = "".join(f"{q(c)}, " for c in contract.sorted_by)
    path = writer.stage(table)
    con.execute(
        f"""COPY (
            SELECT {names} FROM (
                SELECT {names}, 0 AS _src, _stored_row AS _n FROM kept
                UNION ALL
                SELECT {names}, 1 AS _src, {ROW_NUMBER} AS _n FROM fresh)
            ORDER BY {order}_src, _n
        ) TO {_sql_path(path)} (FORMAT parquet)"""
    )
    return int(pq.ParquetFile(path).metadata.num_rows)


def _store_versions(
    writer: StoreWriter,
    planned: _Planned,
    table: TableName,
    staged: _Staged,
    con: duckdb.DuckDBPyConnection,
    counts: dict[str, int],
    quarantine: Path | None,
    now: pd.Timestamp,
    stored_path: Path | None,
) -> IngestResult:
    """Customers: the candidates are versions, merged with the stored history in memory (one
    row per customer version, small next to the logs)."""
    accepted = canonical(
        con.execute(f"SELECT * EXCLUDE ({ROW_NUMBER}) FROM candidates ORDER BY {ROW_NUMBER}").df(),
        table,
    )
    stored = (
        canonical(pd.read_parquet(stored_path), table)
        if stored_path is not None
        else empty_table(table)
    )
    merged = merge_versions(stored, accepted, ingested_at=utc(now))
    if merged.inserted or merged.replaced or stored_path is None:
        merged.frame.to_parquet(writer.stage(table), index=False)
    return IngestResult(
        table=table,
        path=planned.source,
        read=staged.read,
        inserted=merged.inserted,
        replaced=merged.replaced,
        unchanged=merged.already_present,
        quarantined=counts,
        quarantine_path=quarantine,
        stored_rows=len(merged.frame),
        superseded=merged.superseded,
    )


INGEST_ORDER: tuple[TableName, ...] = (
    "identities",
    "customers",
    "transactions",
    "events",
    "subscriptions",
    "subscription_changes",
    "acquisition_costs",
    "assignments",
)
"""The order a folder's tables are ingested in: who a customer is before what they did, a
subscription before its changes (judged against it)."""


def raw_files(directory: Path, *, table: TableName | None = None) -> list[tuple[TableName, Path]]:
    """The raw tables in a folder: files named by table, and subfolders named by table (parts
    of one table), in INGEST_ORDER."""
    order = {t: k for k, t in enumerate(INGEST_ORDER)}
    found: list[tuple[TableName, Path]] = []
    for p in sorted(directory.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir():
            t = p.name.lower() if p.name.lower() in TABLES else None
        elif _is_raw_file(p):
            t = infer_table(p)
        else:
            continue
        if t is not None and (table is None or t == table):
            found.append((t, p))  # type: ignore[arg-type]
    return sorted(found, key=lambda tp: order[tp[0]])


def status(settings: Settings) -> tuple[TableStatus, ...]:
    """Rows and time range of every stored table."""
    out: list[TableStatus] = []
    for table in TABLES:
        if not has_table(settings, table):
            out.append(TableStatus(table, False, 0, None, None))
            continue
        col = CONTRACTS[table].time
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
