"""Raw CSV files read in chunks of text cells (Arrow's reader), keeping what pandas' C reader
loses: a row with more or fewer fields than the header is set aside with its data-row number
(quarantined as `malformed_row`, the rest of the file goes on), a row holding bytes that are
not text in the file's encoding is marked (`invalid_encoding`; its cells are kept, the bad
bytes as U+FFFD), and a NUL byte inside a cell stays in the cell (pandas cuts the cell there,
merging `C2\\x00X` into `C2`). The header is read by the same rules (`csv_header`)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from clv.core.errors import DataError

DELIMITER_HINTS = (";", "\t", "|")
"""Delimiters a one-column header is checked for (a file in another locale's CSV dialect)."""


@dataclass(frozen=True)
class CsvFormat:
    """How a CSV file is written (`ingest.encoding`, `ingest.delimiter`)."""

    encoding: str = "utf-8"
    delimiter: str = ","

    @property
    def utf8(self) -> bool:
        return self.encoding.lower().replace("_", "-") in ("utf-8", "utf8")


@dataclass(frozen=True, eq=False)
class Chunk:
    """At most `rows` well-formed rows of a file, and the malformed rows found up to them."""

    frame: pd.DataFrame
    """The header's columns; every cell as text."""
    rows: npt.NDArray[np.int64]
    """1-based data-row number of each row of `frame` (a quoted newline spans lines, not rows)."""
    malformed: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Rows whose field count differs from the header's: their fields by position (the extra
    fields, comma-joined, in the last column; missing ones empty)."""
    malformed_rows: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.int64)
    )
    undecodable: npt.NDArray[np.bool_] | None = None
    """Rows of `frame` holding bytes that are not text in the file's encoding (None: none)."""


def csv_header(path: Path, fmt: CsvFormat) -> list[str]:
    """The header row's column names (stripped; a UTF-8 byte-order mark dropped). A name that
    appears twice, a header that is not text, or one column that holds another delimiter is
    a DataError saying what to do."""
    with pa.input_stream(str(path), compression="detect") as stream:
        head = stream.read(1 << 20)
    line = head.split(b"\n", 1)[0].rstrip(b"\r")
    if not line.strip():
        raise DataError(f"{path}: cannot read (the file is empty or its first line is blank)")
    try:
        text = line.decode(fmt.encoding)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: the header is not {fmt.encoding} text (byte {line[exc.start]:#04x}): "
            "set ingest.encoding (latin-1, cp1252, ...)"
        ) from None
    names = [
        c.strip() for c in next(csv.reader([text.removeprefix("\ufeff")], delimiter=fmt.delimiter))
    ]
    seen: dict[str, int] = {}
    for k, name in enumerate(names, start=1):
        if name in seen:  # by position: a file without a header row has data for names
            raise DataError(
                f"{path}: columns {seen[name]} and {k} of the header have the same name"
            )
        seen[name] = k
    if len(names) == 1:
        other = next((d for d in DELIMITER_HINTS if d != fmt.delimiter and d in names[0]), None)
        if other is not None:
            shown = {"\t": "\\t"}.get(other, other)
            raise DataError(
                f"{path}: the header is one column holding {shown!r}: the file looks "
                f"separated by {shown!r}; set ingest.delimiter: {shown!r}"
            )
    return names


def _as_text(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, npt.NDArray[np.bool_] | None]:
    """A batch of byte cells as text; rows with bytes that are not UTF-8 marked (and decoded
    with U+FFFD in their place). Only a batch that fails the fast cast is checked row by row."""
    strings = pa.schema([pa.field(f.name, pa.string()) for f in batch.schema])
    try:
        return batch.cast(strings), None
    except pa.ArrowInvalid:
        pass
    bad = np.zeros(batch.num_rows, dtype=bool)
    columns = []
    for column in batch.columns:
        cells = column.to_pylist()
        out: list[str | None] = []
        for i, cell in enumerate(cells):
            if cell is None:
                out.append(None)
                continue
            try:
                out.append(cell.decode("utf-8"))
            except UnicodeDecodeError:
                bad[i] = True
                out.append(cell.decode("utf-8", errors="replace"))
        columns.append(pa.array(out, pa.string()))
    return pa.RecordBatch.from_arrays(columns, schema=strings), bad


def _fields(text: str, width: int, delimiter: str = ",") -> list[str]:
    """A row's fields by position, fitted to `width` columns."""
    cells = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    if len(cells) > width:
        cells = [*cells[: width - 1], delimiter.join(cells[width - 1 :])]
    return cells + [""] * (width - len(cells))


def csv_chunks(
    path: Path, header: list[str], rows: int, fmt: CsvFormat | None = None
) -> Iterator[Chunk]:
    """The file's data rows (after the header line) in chunks of at most `rows`, as text."""
    fmt = fmt or CsvFormat()
    bad_numbers: list[int] = []
    bad_cells: list[list[str]] = []

    def set_aside(row: pacsv.InvalidRow) -> str:
        # Records are counted from the skipped header (1), so the data-row number is one less.
        bad_numbers.append(int(row.number) - 1 if row.number is not None else -1)
        bad_cells.append(_fields(row.text, len(header), fmt.delimiter))
        return "skip"

    reader = pacsv.open_csv(
        pa.input_stream(str(path), compression="detect"),
        read_options=pacsv.ReadOptions(
            use_threads=False, skip_rows=1, column_names=header, encoding=fmt.encoding
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=fmt.delimiter, newlines_in_values=True, invalid_row_handler=set_aside
        ),
        # Bytes, cast to text batch by batch: a row that is not UTF-8 is marked, not fatal.
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.binary())),
    )
    pending: list[pa.RecordBatch] = []
    marks: list[npt.NDArray[np.bool_]] = []
    held = 0
    next_row = 1
    taken = 0

    text_schema = pa.schema([pa.field(c, pa.string()) for c in header])

    def emit(table: pa.Table, mark: npt.NDArray[np.bool_], *, last: bool = False) -> Chunk:
        nonlocal next_row, taken
        numbers = _numbers(next_row, table.num_rows, bad_numbers[taken:])
        if table.num_rows:
            next_row = int(numbers[-1]) + 1
        # Malformed rows found so far that come before the last row handed out now.
        limit = next_row
        mine = [k for k in range(taken, len(bad_numbers)) if last or bad_numbers[k] < limit]
        chunk = Chunk(
            frame=table.to_pandas(),
            rows=numbers,
            malformed=pd.DataFrame([bad_cells[k] for k in mine], columns=header, dtype=object),
            malformed_rows=np.array([bad_numbers[k] for k in mine], dtype=np.int64),
            undecodable=mark if mark.any() else None,
        )
        taken += len(mine)
        return chunk

    with reader:
        for raw in reader:
            batch, bad = _as_text(raw)
            pending.append(batch)
            marks.append(bad if bad is not None else np.zeros(batch.num_rows, dtype=bool))
            held += batch.num_rows
            while held >= rows:
                table = pa.Table.from_batches(pending, schema=text_schema)
                mark = np.concatenate(marks)
                yield emit(table.slice(0, rows), mark[:rows])
                rest = table.slice(rows)
                pending, held, marks = rest.to_batches(), rest.num_rows, [mark[rows:]]
    if held or len(bad_numbers) > taken:
        mark = np.concatenate(marks) if marks else np.zeros(0, dtype=bool)
        yield emit(pa.Table.from_batches(pending, schema=text_schema), mark, last=True)


def _numbers(start: int, n: int, skipped: list[int]) -> npt.NDArray[np.int64]:
    """The first `n` data-row numbers from `start` that are not malformed rows."""
    candidates = np.arange(start, start + n + len(skipped), dtype=np.int64)
    return candidates[~np.isin(candidates, np.asarray(skipped, dtype=np.int64))][:n]
