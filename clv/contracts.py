"""The data contract: the tables clv accepts and the form in which it stores them.

Every timestamp is stored as UTC with microsecond precision (`datetime64[us, UTC]`):
DuckDB 2 inside Feast cannot cast nanosecond time-zone-aware Parquet columns.
Naive timestamps in input are taken to be UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

TableName = Literal["transactions", "customers", "events"]
TABLES: tuple[TableName, ...] = ("transactions", "customers", "events")

TS_DTYPE = "datetime64[us, UTC]"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Literal["string", "timestamp", "number", "category"]
    required: bool
    doc: str


@dataclass(frozen=True)
class TableContract:
    name: TableName
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    """Columns that identify a row for idempotent ingest (besides exact duplicates)."""

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


TRANSACTIONS = TableContract(
    name="transactions",
    columns=(
        Column("customer_id", "string", True, "the customer's id"),
        Column("ts", "timestamp", True, "when the order happened (UTC)"),
        Column("amount", "number", True, "order value; negative for a refund"),
        Column("margin", "number", False, "gross margin of the order; else amount x margin_rate"),
        Column("order_id", "string", False, "order id"),
        Column("channel", "category", False, "sales channel (web, app, store, ...)"),
    ),
    key=("customer_id", "ts", "amount", "order_id"),
)

CUSTOMERS = TableContract(
    name="customers",
    columns=(
        Column("customer_id", "string", True, "the customer's id"),
        Column("signup_ts", "timestamp", False, "when the customer signed up (UTC)"),
        Column("acquisition_channel", "category", False, "how the customer was acquired"),
        Column("country", "category", False, "ISO country code"),
        Column("plan", "category", False, "plan or tier"),
    ),
    key=("customer_id",),
)

EVENTS = TableContract(
    name="events",
    columns=(
        Column("customer_id", "string", True, "the customer's id"),
        Column("ts", "timestamp", True, "when the event happened (UTC)"),
        Column("event_type", "category", True, "login, support_ticket, feature_use, ..."),
    ),
    key=("customer_id", "ts", "event_type"),
)

CONTRACTS: dict[TableName, TableContract] = {
    "transactions": TRANSACTIONS,
    "customers": CUSTOMERS,
    "events": EVENTS,
}


class RejectReason(StrEnum):
    """Why a row went to quarantine; one per row, the first that applies."""

    MISSING_ID = "missing_customer_id"
    BAD_TIMESTAMP = "unparseable_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    BAD_AMOUNT = "non_numeric_amount"
    BAD_VALUE = "non_numeric_value"
    MISSING_VALUE = "missing_required_value"
    DUPLICATE = "exact_duplicate"
