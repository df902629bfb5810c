"""Identities: the aliases (hashed e-mails, device ids, ids retired by a merge) of one customer.

The one rule, point in time, that features, labels, monitoring and serving all apply:
- at time t an alias a is customer c when the identities table has a row (a, c, v) with v
  missing or v < t (strictly before, like every feature); of an alias's rows in force at t the
  latest v wins (a remapped alias), at equal v the greatest customer_id;
- chains resolve: a -> b and b -> c both in force at t give a -> c;
- a cycle among the rows in force at t (a -> b, later b -> a) is broken by dropping its oldest
  row (smallest v, then smallest alias_id): the latest statement wins, and the alias of the
  dropped row is the canonical customer;
- a row whose customer_id is its alias_id says nothing and is ignored;
- before one of its rows is in force an alias is its own customer; an id the table does not
  hold is always its own customer.

`IdentityMap` holds the answer for every t at once, as intervals: for t in (lo, hi] alias_id is
customer_id. The ids linked by any row, at any time, form a group; the group's intervals share
their bounds (its epochs: the distinct valid_from values), so within one epoch each canonical
customer's set of ids is fixed, and per-customer work keys on (customer_id, lo). The group's
least id is its bucket key (`clv.core.store.bucket_predicate`): every id a customer is ever merged
with falls in the same bucket, whatever the time. The SQL users register the intervals as a
view (`register`) and read through `mapped_sql`; the pandas users call `canonical_ids`,
`epoch_keys` and `expand_rows`. Why these rules: docs/decisions/identities.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pandas as pd

from clv.core.contracts import TS_DTYPE
from clv.core.settings import Settings
from clv.core.store import GROUPS_RELATION, has_table, read_table
from clv.core.time import utc

if TYPE_CHECKING:
    import duckdb

INTERVALS_RELATION = "identity_intervals"
"""The DuckDB view of `IdentityMap.intervals` (alias_id, customer_id, lo, hi)."""

BEGINNING = np.iinfo(np.int64).min
"""The lower bound of a first epoch, as int64 microseconds (NaT has the same bits)."""
END = np.iinfo(np.int64).max
"""The upper bound of a last epoch, as int64 microseconds."""

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class IdentityMap:
    """Every id of the identities table, resolved for every time (see the module rules)."""

    intervals: pd.DataFrame
    """alias_id, customer_id, lo, hi (UTC; NaT: unbounded): for t in (lo, hi], alias_id is
    customer_id. One row per id and epoch of its group; the rows of an id partition time."""
    groups: pd.DataFrame
    """member_id, group_id: each id of the table and the least id of its group."""
    edges: pd.DataFrame
    """The rows that say something: alias_id, customer_id, valid_from (NaT: always)."""

    @property
    def empty(self) -> bool:
        return self.edges.empty

    def at(self, when: pd.Timestamp) -> dict[str, str]:
        """The ids that are another customer at `when`, and that customer."""
        edges = self.edges
        if edges.empty:
            return {}
        v = _micros(edges["valid_from"])
        live = v < _micros_of(when)
        ids, codes = _codes(edges)
        a, c = codes[: len(edges)][live], codes[len(edges) :][live]
        nodes = np.unique(np.concatenate([a, c]))
        zero = np.zeros(len(nodes), dtype=np.int64)
        roots = _roots(
            edge_epoch=np.zeros(len(a), dtype=np.int64),
            alias=a,
            customer=c,
            valid=v[live],
            node_epoch=zero,
            node=nodes,
            n_ids=len(ids),
        )
        moved = roots != nodes
        return dict(zip(ids[nodes[moved]].tolist(), ids[roots[moved]].tolist(), strict=True))


def read_identities(settings: Settings) -> IdentityMap | None:
    """The workspace's identities table, resolved; None when none was ingested (or it is empty)."""
    if not has_table(settings, "identities"):
        return None
    resolved = resolve(read_table(settings, "identities"))
    return None if resolved.empty else resolved


def resolve(table: pd.DataFrame) -> IdentityMap:
    """Resolve an identities table (alias_id, customer_id, valid_from) for every time."""
    edges = _edges(table)
    if edges.empty:
        return IdentityMap(
            intervals=pd.DataFrame(
                {
                    "alias_id": pd.Series(dtype=object),
                    "customer_id": pd.Series(dtype=object),
                    "lo": pd.Series(dtype=TS_DTYPE),
                    "hi": pd.Series(dtype=TS_DTYPE),
                }
            ),
            groups=pd.DataFrame(
                {"member_id": pd.Series(dtype=object), "group_id": pd.Series(dtype=object)}
            ),
            edges=edges,
        )
    ids, codes = _codes(edges)
    n = len(edges)
    alias, customer = codes[:n], codes[n:]
    valid = _micros(edges["valid_from"])
    group = _components(alias, customer, len(ids))
    least = np.full(int(group.max()) + 1, len(ids), dtype=np.int64)
    np.minimum.at(least, group, np.arange(len(ids), dtype=np.int64))  # ids are sorted
    groups = pd.DataFrame({"member_id": ids, "group_id": ids[least[group]]})

    # Epochs: per group, (-inf, v1], (v1, v2], ..., (vk, +inf] over its distinct valid_from.
    edge_group = group[alias]
    dated = valid != BEGINNING
    every = np.unique(group)
    bounds = pd.DataFrame(
        {
            "group": np.concatenate([every, edge_group[dated]]),
            "lo": np.concatenate([np.full(len(every), BEGINNING), valid[dated]]),
        }
    ).drop_duplicates()
    epochs = bounds.sort_values(["group", "lo"], ignore_index=True)
    last = np.r_[epochs["group"].to_numpy()[1:] != epochs["group"].to_numpy()[:-1], True]
    epochs["hi"] = np.where(last, END, np.r_[epochs["lo"].to_numpy()[1:], END])
    epochs["epoch"] = np.arange(len(epochs), dtype=np.int64)

    # A row is in force in every epoch (lo, hi] of its group with v <= lo (v < t for each t).
    in_force = pd.DataFrame(
        {"group": edge_group, "alias": alias, "customer": customer, "v": valid}
    ).merge(epochs[["group", "lo", "epoch"]], on="group")
    in_force = in_force.loc[in_force["v"] <= in_force["lo"]]
    nodes = pd.DataFrame({"group": group, "node": np.arange(len(ids), dtype=np.int64)}).merge(
        epochs, on="group"
    )
    nodes = nodes.sort_values(["epoch", "node"], ignore_index=True)
    roots = _roots(
        edge_epoch=in_force["epoch"].to_numpy(np.int64),
        alias=in_force["alias"].to_numpy(np.int64),
        customer=in_force["customer"].to_numpy(np.int64),
        valid=in_force["v"].to_numpy(np.int64),
        node_epoch=nodes["epoch"].to_numpy(np.int64),
        node=nodes["node"].to_numpy(np.int64),
        n_ids=len(ids),
    )
    intervals = pd.DataFrame(
        {
            "alias_id": ids[nodes["node"].to_numpy()],
            "customer_id": ids[roots],
            "lo": _timestamps(nodes["lo"].to_numpy(np.int64)),
            "hi": _timestamps(nodes["hi"].to_numpy(np.int64)),
        }
    )
    return IdentityMap(intervals=intervals, groups=groups, edges=edges)


def canonical_ids(
    ids: Sequence[str] | pd.Series, identities: IdentityMap | None, as_of: pd.Timestamp
) -> list[str]:
    """Each id's canonical customer at `as_of` (the id itself when no row maps it then)."""
    plain = [str(i) for i in ids]
    if identities is None or identities.empty:
        return plain
    moved = identities.at(as_of)
    return [moved.get(i, i) for i in plain]


def epoch_keys(
    ids: pd.Series, times: pd.Series, identities: IdentityMap | None
) -> tuple[npt.NDArray[np.object_], IntArray]:
    """For rows (id, t): the canonical customer at t and the lower bound of the epoch holding t
    (int64 microseconds; BEGINNING for an id the table does not hold): the key under which
    `expand_rows` files that customer's rows in force at t."""
    plain = ids.astype(str).to_numpy(dtype=object)
    t = _micros(times)
    lo = np.full(len(plain), BEGINNING, dtype=np.int64)
    if identities is None or identities.empty or not len(plain):
        return plain, lo
    iv = _interval_arrays(identities)
    rows = pd.DataFrame({"alias_id": plain, "_t": t, "_row": np.arange(len(plain))})
    hit = rows.merge(iv, on="alias_id")
    hit = hit.loc[(hit["lo"] < hit["_t"]) & (hit["_t"] <= hit["hi"])]
    out = plain.copy()
    out[hit["_row"].to_numpy()] = hit["customer_id"].to_numpy(dtype=object)
    lo[hit["_row"].to_numpy()] = hit["lo"].to_numpy(np.int64)
    return out, lo


def expand_rows(
    frame: pd.DataFrame, identities: IdentityMap | None, *, column: str = "customer_id"
) -> tuple[pd.DataFrame, IntArray]:
    """The rows of `frame` under their canonical customer, once per epoch of their id, with
    each row's epoch lower bound (see `epoch_keys`); rows of ids the table does not hold are
    kept as they are (one epoch from the beginning)."""
    if identities is None or identities.empty:
        return frame, np.full(len(frame), BEGINNING, dtype=np.int64)
    iv = _interval_arrays(identities)
    own = frame[column].astype(str)
    held = own.isin(iv["alias_id"]).to_numpy()
    kept = frame.loc[~held]
    mapped = (
        frame.loc[held]
        .assign(_own=own[held].to_numpy())
        .merge(iv.rename(columns={"alias_id": "_own", "customer_id": "_to"}), on="_own")
    )
    lo = np.concatenate(
        [np.full(len(kept), BEGINNING, dtype=np.int64), mapped["lo"].to_numpy(np.int64)]
    )
    mapped = mapped.assign(**{column: mapped["_to"]}).drop(columns=["_own", "_to", "lo", "hi"])
    out = pd.concat([kept, mapped], ignore_index=True) if len(mapped) else kept
    return out, lo


# --------------------------------------------------------------------------- DuckDB


def register(con: duckdb.DuckDBPyConnection, identities: IdentityMap) -> None:
    """Register the views that `mapped_sql` and the grouped bucket predicate read."""
    resolved = identities
    con.register(f"{INTERVALS_RELATION}_in", resolved.intervals)
    con.execute(
        f"CREATE OR REPLACE VIEW {INTERVALS_RELATION} AS SELECT "
        "CAST(alias_id AS VARCHAR) AS alias_id, CAST(customer_id AS VARCHAR) AS customer_id, "
        "coalesce(CAST(lo AS TIMESTAMPTZ), '-infinity'::TIMESTAMPTZ) AS lo, "
        "coalesce(CAST(hi AS TIMESTAMPTZ), 'infinity'::TIMESTAMPTZ) AS hi "
        f"FROM {INTERVALS_RELATION}_in"
    )
    con.register(f"{GROUPS_RELATION}_in", resolved.groups)
    con.execute(
        f"CREATE OR REPLACE VIEW {GROUPS_RELATION} AS SELECT "
        "CAST(member_id AS VARCHAR) AS member_id, CAST(group_id AS VARCHAR) AS group_id "
        f"FROM {GROUPS_RELATION}_in"
    )


def mapped_sql(source: str, *, column: str = "customer_id", identities: bool = True) -> str:
    """A SELECT of every column of `source` with `column` replaced by the canonical customer and
    `lo`, `hi` added: the row counts for that customer at snapshots t in (lo, hi]. A row of an
    id the table holds appears once per epoch of its group; any other row once, with
    lo = -infinity and hi = infinity. `identities=False` (no table): every row that way, without
    a join, so the query plan stays that of the ids alone."""
    if not identities:
        return (
            f"SELECT *, '-infinity'::TIMESTAMPTZ AS lo, 'infinity'::TIMESTAMPTZ AS hi FROM {source}"
        )
    return f"""
SELECT s.* REPLACE (coalesce(m.customer_id, s.{column}) AS {column}),
    coalesce(m.lo, '-infinity'::TIMESTAMPTZ) AS lo,
    coalesce(m.hi, 'infinity'::TIMESTAMPTZ) AS hi
FROM {source} s LEFT JOIN {INTERVALS_RELATION} m ON m.alias_id = s.{column}"""


# --------------------------------------------------------------------------- internals


def _edges(table: pd.DataFrame) -> pd.DataFrame:
    """The rows that say something: ids as stripped strings, no-op and duplicate rows dropped."""
    alias = table["alias_id"].astype("string").str.strip()
    customer = table["customer_id"].astype("string").str.strip()
    valid = (
        pd.to_datetime(table["valid_from"], utc=True)
        if "valid_from" in table.columns
        else pd.Series(pd.NaT, index=table.index, dtype="datetime64[ns, UTC]")
    )
    edges = pd.DataFrame(
        {
            "alias_id": alias.astype(object),
            "customer_id": customer.astype(object),
            "valid_from": valid.astype(TS_DTYPE),
        }
    )
    keep = alias.notna() & customer.notna() & (alias != "") & (customer != "")
    keep &= alias != customer
    edges = edges.loc[keep.fillna(False).to_numpy()]
    return edges.drop_duplicates(ignore_index=True)


def _codes(edges: pd.DataFrame) -> tuple[npt.NDArray[np.object_], IntArray]:
    """Sorted distinct ids, and the codes of alias_id then customer_id (one array)."""
    both = np.concatenate(
        [edges["alias_id"].to_numpy(dtype=object), edges["customer_id"].to_numpy(dtype=object)]
    ).astype(str)
    ids, codes = np.unique(both, return_inverse=True)
    return ids.astype(object), codes.astype(np.int64)


def _components(alias: IntArray, customer: IntArray, n_ids: int) -> IntArray:
    """The connected group of each id (undirected: linked by any row)."""
    if not n_ids:
        return np.empty(0, dtype=np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix(
        (np.ones(len(alias), dtype=np.int8), (alias, customer)), shape=(n_ids, n_ids)
    )
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def _roots(
    *,
    edge_epoch: IntArray,
    alias: IntArray,
    customer: IntArray,
    valid: IntArray,
    node_epoch: IntArray,
    node: IntArray,
    n_ids: int,
) -> IntArray:
    """The canonical customer of each node row (epoch, id), from the rows in force in each
    epoch: the latest row per alias, chains followed, cycles broken (see the module rules).
    Node rows must be sorted by (epoch, id) and hold every id the in-force rows name."""
    key = node_epoch * n_ids + node
    parent = node.copy()
    order = np.lexsort((customer, valid, alias, edge_epoch))  # latest v, then greatest id
    e, a, c, v = edge_epoch[order], alias[order], customer[order], valid[order]
    last = np.r_[(e[1:] != e[:-1]) | (a[1:] != a[:-1]), True] if len(e) else np.empty(0, bool)
    e, a, c, v = e[last], a[last], c[last], v[last]
    parent[np.searchsorted(key, e * n_ids + a)] = c
    root = parent
    for _ in range(int(np.ceil(np.log2(max(n_ids, 2)))) + 2):  # pointer doubling
        nxt = root[np.searchsorted(key, node_epoch * n_ids + root)]
        if np.array_equal(nxt, root):
            break
        root = nxt
    stuck = parent[np.searchsorted(key, node_epoch * n_ids + root)] != root
    if stuck.any():  # a cycle: rare, resolved epoch by epoch
        for epoch in np.unique(node_epoch[stuck]):
            rows = np.flatnonzero(node_epoch == epoch)
            mine = e == epoch
            in_force = dict(zip(a[mine], zip(c[mine], v[mine], strict=True), strict=True))
            root[rows] = _break_cycles(node[rows], in_force)
    return root


def _break_cycles(nodes: IntArray, rows: dict[int, tuple[int, int]]) -> IntArray:
    """Roots of one epoch's ids when its rows (alias -> (customer, v)) hold cycles: drop each
    cycle's oldest row (smallest v, then smallest alias) until none is left."""
    parent = {int(x): int(c) for x, (c, _) in rows.items()}
    valid = {int(x): int(v) for x, (_, v) in rows.items()}
    while True:
        cycle = _find_cycle(parent)
        if cycle is None:
            break
        oldest = min(cycle, key=lambda x: (valid[x], x))
        del parent[oldest]
    out = np.empty(len(nodes), dtype=np.int64)
    for i, x in enumerate(nodes.tolist()):
        while x in parent:
            x = parent[x]
        out[i] = x
    return out


def _find_cycle(parent: dict[int, int]) -> list[int] | None:
    """The aliases of one cycle of a functional graph, or None."""
    done: set[int] = set()
    for start in sorted(parent):
        path: dict[int, int] = {}
        x = start
        while x in parent and x not in done and x not in path:
            path[x] = len(path)
            x = parent[x]
        if x in path:
            walk = list(path)
            return walk[path[x] :]
        done.update(path)
    return None


def _interval_arrays(identities: IdentityMap) -> pd.DataFrame:
    iv = identities.intervals
    return pd.DataFrame(
        {
            "alias_id": iv["alias_id"].to_numpy(dtype=object),
            "customer_id": iv["customer_id"].to_numpy(dtype=object),
            "lo": _micros(iv["lo"]),
            "hi": np.where(iv["hi"].isna(), END, _micros(iv["hi"])),
        }
    )


def _micros(ts: pd.Series) -> IntArray:
    """UTC timestamps as int64 microseconds; NaT as BEGINNING."""
    parsed = pd.to_datetime(ts, utc=True).astype(TS_DTYPE).dt.tz_convert(None)
    return parsed.to_numpy(dtype="datetime64[us]").view(np.int64)


def _micros_of(when: pd.Timestamp) -> int:
    ts = utc(when)
    return int(np.datetime64(ts.tz_convert(None).to_datetime64(), "us").astype(np.int64))


def _timestamps(micros: IntArray) -> pd.Series:
    """int64 microseconds as UTC timestamps; BEGINNING and END as NaT (unbounded)."""
    values = np.where((micros == BEGINNING) | (micros == END), BEGINNING, micros)
    return pd.Series(values.view("datetime64[us]")).dt.tz_localize("UTC").astype(TS_DTYPE)
