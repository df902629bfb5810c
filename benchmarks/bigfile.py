"""A big line-level transactions file for the ingest benchmark (issue 12, requirement 7).

`write_transactions(path, lines=N, fmt=...)` writes N order lines (~2 per order, ~N/20
customers, three years of UTC timestamps in rough time order) with ~0.1% planted bad rows of
seven kinds, one block of rows at a time (numpy + pyarrow; memory is one block, never the
file), as a CSV, a gzipped CSV or a folder of Parquet parts (one part per block). It returns
what ingest should make of the file: the rows it accepts and the rows it quarantines, per
reason. The same lines, seed and block size give the same rows in every format.

    python -m benchmarks.bigfile OUT --lines 10000000 [--format csv|csv.gz|parquet]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from clv.core.contracts import RejectReason

Format = Literal["csv", "csv.gz", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "csv.gz", "parquet")
SUFFIX: dict[Format, str] = {"csv": ".csv", "csv.gz": ".csv.gz", "parquet": ""}
"""`transactions.csv`, `transactions.csv.gz`, and the folder `transactions/` of parts."""

COLUMNS = (
    "customer_id",
    "ts",
    "order_id",
    "line_id",
    "sku",
    "quantity",
    "unit_price",
    "amount",
    "channel",
)
START = int(np.datetime64("2022-01-01T00:00:00", "s").astype(np.int64))
SPAN = 3 * 365 * 86_400
"""Order times: 2022-01-01 .. 2024-12-30 UTC, rising with the row number, plus up to a day."""
FUTURE = int(np.datetime64("2099-01-01T00:00:00", "s").astype(np.int64))
EARLY = int(np.datetime64("1899-12-30T00:00:00", "s").astype(np.int64))
"""A spreadsheet's day zero: before the default `ingest.min_date` (1970-01-01)."""
BAD_SHARE = 0.001
FIRST_CLEAN = 16
"""The file's first rows are all valid, so that a planted duplicate always has a source."""
SKUS = 5_000
CHANNELS = ("web", "app", "store", "marketplace")
CHANNEL_SHARE = (0.5, 0.3, 0.15, 0.05)
RETURN_SHARE = 0.01
"""Lines with a negative quantity (a return on its own line)."""

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


class Fault(Enum):
    """A planted bad row. Each planted row has one fault, so one quarantine reason."""

    MISSING_ID = "missing_id"
    BAD_TS = "bad_ts"
    FUTURE_TS = "future_ts"
    EARLY_TS = "early_ts"
    BAD_AMOUNT = "bad_amount"
    EXACT_DUP = "exact_dup"
    LINE_DUP = "line_dup"


def reason(fault: Fault, fmt: Format) -> RejectReason:
    """The quarantine reason of a fault in a format.

    CSV: an empty id, "not-a-date", 2099, 1899, "12.5O" (a letter O), an earlier valid row
    copied, an earlier row's key with another quantity and amount. Parquet columns are typed,
    so an unparseable time is a null (missing_required_value) and a non-numeric amount is inf.
    """
    if fault is Fault.BAD_TS and fmt == "parquet":
        return RejectReason.MISSING_VALUE
    return {
        Fault.MISSING_ID: RejectReason.MISSING_ID,
        Fault.BAD_TS: RejectReason.BAD_TIMESTAMP,
        Fault.FUTURE_TS: RejectReason.FUTURE_TIMESTAMP,
        Fault.EARLY_TS: RejectReason.BEFORE_MIN_DATE,
        Fault.BAD_AMOUNT: RejectReason.BAD_AMOUNT,
        Fault.EXACT_DUP: RejectReason.DUPLICATE,
        Fault.LINE_DUP: RejectReason.DUPLICATE_LINE,
    }[fault]


@dataclass(frozen=True)
class BigFile:
    """A written file and what ingest should make of it."""

    path: Path
    fmt: Format
    lines: int
    bytes: int
    seconds: float
    blocks: int
    """Blocks written (for Parquet: the parts)."""
    customers: int
    orders: int
    accepted: int
    """Rows a fresh workspace stores: lines minus the planted bad rows."""
    quarantined: dict[str, int]
    """Planted bad rows per `RejectReason` value."""

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "path": str(self.path)}


@dataclass(frozen=True)
class Block:
    """One block of rows as numbers (ids, seconds since the epoch, indices), and its faults."""

    columns: dict[str, npt.NDArray[np.generic]]
    faults: dict[Fault, Ints]
    valid: Mask
    """Rows without a fault: the only rows a planted duplicate copies."""
    used: Mask
    """Valid rows already copied by a duplicate (each source is copied once, so that two line
    duplicates of one row are never exact duplicates of each other)."""

    @property
    def rows(self) -> int:
        return len(self.valid)


class Lines:
    """The seeded stream of blocks: orders, their lines, then the planted faults."""

    def __init__(self, *, lines: int, seed: int, block_rows: int) -> None:
        self.lines = lines
        self.block_rows = block_rows
        self.rng = np.random.default_rng(seed)
        self.customers = max(1, lines // 20)
        weight = self.rng.gamma(2.0, 1.0, self.customers)  # few never order
        self.customer_cdf = np.cumsum(weight) / weight.sum()
        sku_weight = 1.0 / (np.arange(SKUS) + 10.0)  # a long tail of slow sellers
        self.sku_cdf = np.cumsum(sku_weight) / sku_weight.sum()
        self.price = np.round(np.floor(self.rng.lognormal(2.8, 0.9, SKUS)) + 0.99, 2)
        self.channel_cdf = np.cumsum(CHANNEL_SHARE)
        self.row = 0
        self.orders = 0
        self.previous: Block | None = None

    def blocks(self) -> Iterator[Block]:
        while self.row < self.lines:
            block = self._block(min(self.block_rows, self.lines - self.row))
            self.row += block.rows
            self.previous = block
            yield block

    def _block(self, n: int) -> Block:
        rng = self.rng
        sizes = 1 + rng.poisson(1.0, n)  # lines per order, mean 2; more than enough orders
        ends = np.cumsum(sizes)
        orders = int(np.searchsorted(ends, n)) + 1
        sizes = sizes[:orders]
        sizes[-1] -= ends[orders - 1] - n  # the block's last order is cut at the block's end
        first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        of = np.repeat(np.arange(orders), sizes)
        customer = np.minimum(
            np.searchsorted(self.customer_cdf, rng.random(orders)), self.customers - 1
        )
        at = ((self.row + first) / self.lines * SPAN).astype(np.int64)
        ts = START + np.minimum(at + rng.integers(0, 86_400, orders), SPAN - 1)
        channel = np.searchsorted(self.channel_cdf, rng.random(orders))
        sku = np.minimum(np.searchsorted(self.sku_cdf, rng.random(n)), SKUS - 1)
        quantity = 1 + rng.poisson(0.4, n)
        quantity[rng.random(n) < RETURN_SHARE] *= -1
        unit_price = self.price[sku]
        columns: dict[str, npt.NDArray[np.generic]] = {
            "customer_id": customer[of],
            "ts": ts[of],
            "order_id": self.orders + of,
            "line_id": np.arange(n) - first[of] + 1,
            "sku": sku,
            "quantity": quantity,
            "unit_price": unit_price,
            "amount": np.round(quantity * unit_price, 2),
            "channel": channel[of],
        }
        self.orders += orders
        return self._plant(columns, n)

    def _plant(self, columns: dict[str, npt.NDArray[np.generic]], n: int) -> Block:
        """Choose the faulty rows, copy the duplicates' sources, set the bad times."""
        rng = self.rng
        lo = min(FIRST_CLEAN, n) if self.row == 0 else 0
        per_kind = min(round(n * BAD_SHARE / len(Fault)), (n - lo) // len(Fault))
        chosen = lo + rng.choice(n - lo, size=per_kind * len(Fault), replace=False)
        faults = {
            f: np.sort(chosen[k * per_kind : (k + 1) * per_kind]) for k, f in enumerate(Fault)
        }
        valid = np.ones(n, dtype=bool)
        valid[chosen] = False
        block = Block(columns, faults, valid, np.zeros(n, dtype=bool))
        for fault in (Fault.EXACT_DUP, Fault.LINE_DUP):
            self._copy_sources(block, faults[fault], change=fault is Fault.LINE_DUP)
        ts = columns["ts"]
        ts[faults[Fault.FUTURE_TS]] = FUTURE
        ts[faults[Fault.EARLY_TS]] = EARLY
        return block

    def _copy_sources(self, block: Block, rows: Ints, *, change: bool) -> None:
        """Each row becomes a copy of an earlier valid row (this block or the previous one,
        so a duplicate often sits in another ingest chunk than its source), used only once.
        `change`: the copy keeps the key but not the quantity and amount (a line duplicate)."""
        prev = self.previous
        before = np.flatnonzero(prev.valid) if prev is not None else np.zeros(0, dtype=np.int64)
        here = np.flatnonzero(block.valid)
        sources: list[tuple[Block, int]] = []
        for row in rows.tolist():
            candidates = len(before) + int(np.searchsorted(here, row))
            for _ in range(1_000):
                k = int(self.rng.integers(0, candidates))
                src, i = (
                    (prev, int(before[k]))
                    if k < len(before)
                    else (block, int(here[k - len(before)]))
                )
                assert src is not None
                if not src.used[i]:
                    src.used[i] = True
                    sources.append((src, i))
                    break
            else:
                raise ValueError(f"no unused valid row before row {row} to duplicate")
        for name, col in block.columns.items():
            col[rows] = [s.columns[name][i] for s, i in sources]
        if change:
            q = np.asarray(block.columns["quantity"], dtype=np.int64)  # views: set in place
            price = np.asarray(block.columns["unit_price"], dtype=np.float64)
            q[rows] = np.where(q[rows] > 0, q[rows] + 1, q[rows] - 1)
            block.columns["amount"][rows] = np.round(q[rows] * price[rows], 2)


class Render:
    """Blocks as Arrow tables: CSV text (faults as text) or typed Parquet columns."""

    def __init__(self, fmt: Format) -> None:
        self.fmt = fmt
        self.skus = pa.array([f"SKU{k:05d}" for k in range(SKUS)])
        self.channels = pa.array(CHANNELS)

    def table(self, block: Block) -> pa.Table:
        c = block.columns
        f = block.faults
        text = self.fmt != "parquet"
        customer = _prefixed("C", c["customer_id"])
        customer = _set(customer, f[Fault.MISSING_ID], pa.scalar(None, pa.string()))
        seconds = pa.array(c["ts"].astype("datetime64[s]"))
        if text:
            iso = pc.cast(seconds, pa.string())  # "2022-01-01 00:01:04"
            ts = pc.binary_join_element_wise(pc.utf8_replace_slice(iso, 10, 11, "T"), "Z", "")
            ts = _set(ts, f[Fault.BAD_TS], pa.scalar("not-a-date"))
            amount = _set(pc.cast(pa.array(c["amount"]), pa.string()), f[Fault.BAD_AMOUNT], "12.5O")
        else:
            ts = pc.cast(seconds, pa.timestamp("us", tz="UTC"))
            ts = _set(ts, f[Fault.BAD_TS], pa.scalar(None, pa.timestamp("us", tz="UTC")))
            values = c["amount"].astype(np.float64)
            values[f[Fault.BAD_AMOUNT]] = np.inf
            amount = pa.array(values)
        return pa.table(
            {
                "customer_id": customer,
                "ts": ts,
                "order_id": _prefixed("O", c["order_id"]),
                "line_id": pc.cast(pa.array(c["line_id"]), pa.string()),
                "sku": self.skus.take(pa.array(c["sku"])),
                "quantity": pa.array(c["quantity"]),
                "unit_price": pa.array(c["unit_price"]),
                "amount": amount,
                "channel": self.channels.take(pa.array(c["channel"])),
            }
        )


def _prefixed(prefix: str, ids: npt.NDArray[np.generic]) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(ids), pa.string()), "")


def _set(values: pa.Array, rows: Ints, value: object) -> pa.Array:
    """`values` with `value` at `rows`."""
    mask = np.zeros(len(values), dtype=bool)
    mask[rows] = True
    return pc.if_else(pa.array(mask), value, values)


def write_transactions(
    path: Path,
    *,
    lines: int,
    fmt: Format,
    seed: int = 12,
    block_rows: int = 1_000_000,
    gzip_level: int = 1,
) -> BigFile:
    """Write `lines` transaction lines to `path` (for Parquet: a folder, one part per block)."""
    t0 = time.perf_counter()
    stream = Lines(lines=lines, seed=seed, block_rows=block_rows)
    render = Render(fmt)
    counts = dict.fromkeys(Fault, 0)

    def tables() -> Iterator[pa.Table]:
        for block in stream.blocks():
            for fault, rows in block.faults.items():
                counts[fault] += len(rows)
            yield render.table(block)

    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        blocks = _write_parts(path, tables())
    else:
        blocks = _write_csv(path, tables(), gzip_level=gzip_level if fmt == "csv.gz" else None)
    quarantined: dict[str, int] = {}
    for fault, n in counts.items():
        key = reason(fault, fmt).value
        quarantined[key] = quarantined.get(key, 0) + n
    size = sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
    return BigFile(
        path=path,
        fmt=fmt,
        lines=lines,
        bytes=size,
        seconds=round(time.perf_counter() - t0, 2),
        blocks=blocks,
        customers=stream.customers,
        orders=stream.orders,
        accepted=lines - sum(quarantined.values()),
        quarantined=quarantined,
    )


def _write_csv(path: Path, tables: Iterator[pa.Table], *, gzip_level: int | None) -> int:
    """Append each table to one CSV (gzipped at `gzip_level` unless None); unquoted cells."""
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    blocks = 0
    with (
        gzip.open(path, "wb", compresslevel=gzip_level)
        if gzip_level is not None
        else path.open("wb") as sink
    ):
        writer: pacsv.CSVWriter | None = None
        for table in tables:
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema, write_options=options)
            writer.write_table(table)
            blocks += 1
        if writer is not None:
            writer.close()
    return blocks


def _write_parts(folder: Path, tables: Iterator[pa.Table]) -> int:
    """Each table as `folder/part-00000.parquet`, `part-00001.parquet`, ..."""
    folder.mkdir(exist_ok=True)
    parts = 0
    for table in tables:
        pq.write_table(table, folder / f"part-{parts:05d}.parquet")
        parts += 1
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the file (or, for parquet, the folder)")
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--format", choices=FORMATS, default="csv")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--gzip-level", type=int, default=1)
    args = parser.parse_args(argv)
    written = write_transactions(
        args.out, lines=args.lines, fmt=args.format, seed=args.seed, gzip_level=args.gzip_level
    )
    print(json.dumps(written.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
