"""The data contract: the tables clv accepts and the form in which it stores them.

Every timestamp is stored as UTC with microsecond precision (`datetime64[us, UTC]`):
DuckDB 2 inside Feast cannot cast nanosecond time-zone-aware Parquet columns.
Naive timestamps in input are taken to be UTC.

Customers are versioned, not upserted: every stored row is one version of a customer's
attributes, in force from its `valid_from`, else from its `ingested_at` (the ingest instant);
a customer's first version without a `valid_from` also covers the time before it (see
`clv.inputs.versions` and docs/decisions/customer-versions.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

TableName = Literal["transactions", "customers", "events", "identities"]
TABLES: tuple[TableName, ...] = ("transactions", "customers", "events", "identities")

TS_DTYPE = "datetime64[us, UTC]"


@dataclass(frozen=True)
class Column:
    name: str
    kind: Literal["string", "timestamp", "number", "category"]
    required: bool
    doc: str
    product_of: tuple[str, ...] = ()
    """When the value is missing and all these columns are present: their product
    (amount = quantity x unit_price). A required column may then be absent from the file."""
    source: Literal["input", "ingest"] = "input"
    """`ingest`: set by ingest (never read from the file), stored with the rows."""


@dataclass(frozen=True)
class TableContract:
    name: TableName
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    """Columns that identify a row when none of them is missing: a second row with the same key
    is the same row even if other values differ (transactions: one line of an order). A row
    with a missing key column is identified by all its columns (an exact duplicate)."""
    versioned: bool = False
    """Rows with the same key are versions of one entity, not duplicates (customers)."""

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def inputs(self) -> tuple[Column, ...]:
        """The columns read from a file (not those set by ingest)."""
        return tuple(c for c in self.columns if c.source == "input")


TRANSACTIONS = TableContract(
    name="transactions",
    columns=(
        Column("customer_id", "string", True, "the customer's id"),
        Column("ts", "timestamp", True, "when the order happened (UTC)"),
        Column(
            "amount",
            "number",
            True,
            "order (or line) value; negative for a refund; else quantity x unit_price",
            product_of=("quantity", "unit_price"),
        ),
        Column("margin", "number", False, "gross margin of the row; else amount x margin_rate"),
        Column("order_id", "string", False, "order id"),
        Column("channel", "category", False, "sales channel (web, app, store, ...)"),
        Column("line_id", "string", False, "line of the order: rows are order lines"),
        Column("sku", "string", False, "product of the line"),
        Column("quantity", "number", False, "units on the line"),
        Column("unit_price", "number", False, "price per unit"),
        Column("currency", "category", False, "ISO currency code (stored: the workspace's)"),
        Column(
            "refund_of",
            "string",
            False,
            "set by ingest on a cancellation or return: the order it refunds, when found",
            source="ingest",
        ),
    ),
    key=("customer_id", "order_id", "line_id"),
)

CUSTOMERS = TableContract(
    name="customers",
    columns=(
        Column("customer_id", "string", True, "the customer's id"),
        Column("signup_ts", "timestamp", False, "when the customer signed up (UTC)"),
        Column("acquisition_channel", "category", False, "how the customer was acquired"),
        Column("country", "category", False, "ISO country code"),
        Column("plan", "category", False, "plan or tier"),
        Column("valid_from", "timestamp", False, "when these attributes took effect (UTC)"),
        Column(
            "ingested_at",
            "timestamp",
            False,
            "when the row was ingested (UTC); a version without valid_from starts here",
            source="ingest",
        ),
    ),
    key=("customer_id",),
    versioned=True,
)

CUSTOMER_ATTRIBUTES: tuple[str, ...] = ("signup_ts", "acquisition_channel", "country", "plan")
"""What a customer version holds: a row that changes one of these is a new version."""

EVENTS = TableContract(
    name="events",
    columns=(
        Column("customer_id", "string", True, "the customer's id"),
        Column("ts", "timestamp", True, "when the event happened (UTC)"),
        Column("event_type", "category", True, "login, support_ticket, feature_use, ..."),
    ),
    key=("customer_id", "ts", "event_type"),
)

IDENTITIES = TableContract(
    name="identities",
    columns=(
        Column("alias_id", "string", True, "another id of the customer (hashed e-mail, device)"),
        Column("customer_id", "string", True, "the canonical customer the alias belongs to"),
        Column(
            "valid_from",
            "timestamp",
            False,
            "when the alias became known to be this customer (UTC); missing: always",
        ),
    ),
    key=("alias_id", "customer_id", "valid_from"),
)

CONTRACTS: dict[TableName, TableContract] = {
    "transactions": TRANSACTIONS,
    "customers": CUSTOMERS,
    "events": EVENTS,
    "identities": IDENTITIES,
}


class RejectReason(StrEnum):
    """Why a row went to quarantine; one per row, the first that applies."""

    MISSING_ID = "missing_customer_id"
    BAD_TIMESTAMP = "unparseable_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    BAD_AMOUNT = "non_numeric_amount"
    BAD_VALUE = "non_numeric_value"
    MISSING_VALUE = "missing_required_value"
    BEFORE_MIN_DATE = "before_min_date"
    """A timestamp before `ingest.min_date` (a default date such as 1899-12-30, a typo)."""
    IMPLAUSIBLE_AMOUNT = "implausible_amount"
    """|amount| above `ingest.max_abs_amount` (default: AMOUNT_BOUND_FACTOR x the file's median
    nonzero |amount|)."""
    MIXED_CURRENCY = "mixed_currency"
    """A currency other than the workspace's (`ingest.currency`) without a rate to convert it."""
    DUPLICATE = "exact_duplicate"
    DUPLICATE_LINE = "duplicate_line"
    """Same (customer_id, order_id, line_id) as an earlier row of the file, other values."""


CHAMPION: Final = "champion"
CHALLENGER: Final = "challenger"
CANARY: Final = "canary"
"""The registry aliases (MLflow model-version aliases): the served model, the newly trained
version awaiting its gates, and the version serving a share of customers."""
ALIASES = (CHAMPION, CHALLENGER, CANARY)
Route = Literal["champion", "canary"]
"""Where one request is routed: the champion, or the canary for its share of customers."""

BASELINE_PREDICTORS: tuple[str, ...] = ("baseline", "last_horizon", "run_rate")
"""The simple predictors every evaluation scores beside the model (BG/NBD + Gamma-Gamma and
the naive rules); training tags each as `eval.<predictor>.<metric>`, the `baselines` gate
reads them."""
