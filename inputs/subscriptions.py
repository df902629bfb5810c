"""Subscriptions point in time: the subscriptions known at t, whether each is active, its state.

The rule, strictly before t like every feature:
- at t a subscription exists when `started_at < t`; it is active at t unless it ended before t
  (`ended_at < t`). An end at t or later is not known at t: its `ended_at` reads as missing
  (a start at t, likewise, is not seen at t);
- its state at t (plan, seats, mrr) is the subscription row's, then each change with
  `ts < t` within its span (`started_at <= ts`, and `ts <= ended_at` when it has ended) in time
  order, a change's missing plan or seats leaving the one before (the row's own values are the
  state from started_at until its first change). A change of a subscription not known at t
  (or outside its span, stored before its subscription was) says nothing.

Ids are as stored: resolving aliases (`clv.inputs.identities`) is the reader's caller's.
Why these rules: docs/decisions/subscriptions.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clv.core.contracts import TableName
from clv.core.settings import Settings
from clv.core.store import has_table, read_table
from clv.core.time import utc
from clv.inputs.parse import empty_table

STATE: tuple[str, ...] = ("plan", "seats", "mrr")
"""What a change sets from its ts on."""


@dataclass(frozen=True, eq=False)
class SubscriptionLog:
    """A subscription business's stored tables: its subscriptions and their changes, the usage
    and support events, the transactions (invoices and one-off purchases); a table not
    ingested is empty."""

    subscriptions: pd.DataFrame
    changes: pd.DataFrame
    events: pd.DataFrame
    transactions: pd.DataFrame

    def at(self, when: pd.Timestamp) -> pd.DataFrame:
        """`subscriptions_at` of these tables."""
        return subscriptions_at(self.subscriptions, self.changes, when)

    @property
    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """subscriptions, changes, events, transactions: the contractual models' order."""
        return (self.subscriptions, self.changes, self.events, self.transactions)

    @property
    def start(self) -> pd.Timestamp:
        return utc(self.subscriptions["started_at"].min())

    @property
    def end(self) -> pd.Timestamp:
        """The day after the last time the log holds: every row is before it."""
        times = [
            self.transactions["ts"].max(),
            self.subscriptions["started_at"].max(),
            self.subscriptions["ended_at"].max(),
        ]
        last = max(t for t in times if not pd.isna(t))
        return utc(last).floor("D") + pd.Timedelta(days=1)


def read_subscriptions(settings: Settings) -> SubscriptionLog | None:
    """The workspace's subscription log; None when no subscriptions were ingested (changes
    alone say nothing)."""
    if not has_table(settings, "subscriptions"):
        return None
    subscriptions = read_table(settings, "subscriptions")
    if subscriptions.empty:
        return None

    def table(name: TableName) -> pd.DataFrame:
        return read_table(settings, name) if has_table(settings, name) else empty_table(name)

    return SubscriptionLog(
        subscriptions, table("subscription_changes"), table("events"), table("transactions")
    )


def subscriptions_at(
    subscriptions: pd.DataFrame, changes: pd.DataFrame, when: pd.Timestamp
) -> pd.DataFrame:
    """Every subscription started before `when`, in the subscriptions' order, with its state
    at `when` (see the module rules) and `active` (not ended before `when`)."""
    t = utc(when)
    subs = subscriptions.loc[subscriptions["started_at"] < t].reset_index(drop=True)
    ended = (subs["ended_at"] < t).fillna(False).to_numpy(dtype=bool)
    subs["ended_at"] = subs["ended_at"].where(ended)
    subs["active"] = ~ended
    spans = subs[["subscription_id", "started_at", "ended_at"]].reset_index(names="_row")
    seen = changes.loc[changes["ts"] < t, ["subscription_id", "ts", *STATE]]
    seen = seen.merge(spans, on="subscription_id")
    inside = (seen["ts"] >= seen["started_at"]) & ~(seen["ts"] > seen["ended_at"])
    steps = pd.concat(
        [
            spans[["_row", "started_at"]]
            .rename(columns={"started_at": "ts"})
            .assign(**{c: subs[c] for c in STATE}, _change=0),
            seen.loc[inside, ["_row", "ts", *STATE]].assign(_change=1),
        ],
        ignore_index=True,
    ).sort_values(["_row", "ts", "_change"], kind="stable")
    state = steps.groupby("_row")[list(STATE)].last()  # per column: its last non-missing value
    for c in STATE:
        subs[c] = state[c].reindex(subs.index).astype(subscriptions[c].dtype)
    return subs
