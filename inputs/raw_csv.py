"""Raw CSV files read in chunks of text cells (Arrow's reader), keeping what pandas' C reader
loses: a row with more or fewer fields than the header is set aside with its data-row number
(quarantined as `malformed_row`, the rest of the file goes on), and a NUL byte inside a cell
stays in the cell (pandas cuts the cell there, merging `C2\\x00X` into `C2`)."""

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


def _fields(text: str, width: int) -> list[str]:
    """A row's fields by position, fitted to `width` columns."""
    cells = next(csv.reader(io.StringIO(text)), [])
    if len(cells) > width:
        cells = [*cells[: width - 1], ",".join(cells[width - 1 :])]
    return cells + [""] * (width - len(cells))


def csv_chunks(path: Path, header: list[str], rows: int) -> Iterator[Chunk]:
    """The file's data rows (after the header line) in chunks of at most `rows`, as text."""
    bad_numbers: list[int] = []
    bad_cells: list[list[str]] = []

    def set_aside(row: pacsv.InvalidRow) -> str:
        # Records are counted from the skipped header (1), so the data-row number is one less.
        bad_numbers.append(int(row.number) - 1 if row.number is not None else -1)
        bad_cells.append(_fields(row.text, len(header)))
        return "skip"

    reader = pacsv.open_csv(
        pa.input_stream(str(path), compression="detect"),
        read_options=pacsv.ReadOptions(use_threads=False, skip_rows=1, column_names=header),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=set_aside),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())),
    )
    pending: list[pa.RecordBatch] = []
    held = 0
    next_row = 1
    taken = 0

    def emit(table: pa.Table, *, last: bool = False) -> Chunk:
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
        )
        taken += len(mine)
        return chunk

    with reader:
        for batch in reader:
            pending.append(batch)
            held += batch.num_rows
            while held >= rows:
                table = pa.Table.from_batches(pending, schema=reader.schema)
                yield emit(table.slice(0, rows))
                rest = table.slice(rows)
                pending, held = rest.to_batches(), rest.num_rows
    if held or len(bad_numbers) > taken:
        yield emit(pa.Table.from_batches(pending, schema=reader.schema), last=True)


def _numbers(start: int, n: int, skipped: list[int]) -> npt.NDArray[np.int64]:
    """The first `n` data-row numbers from `start` that are not malformed rows."""
    candidates = np.arange(start, start + n + len(skipped), dtype=np.int64)
    return candidates[~np.isin(candidates, np.asarray(skipped, dtype=np.int64))][:n]
