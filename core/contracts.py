"""The data contract: the tables clv accepts and the form in which it stores them.

Every timestamp is stored as UTC with microsecond precision (`datetime64[us, UTC]`):
DuckDB 2 inside Feast cannot cast nanosecond time-zone-aware Parquet columns.
Naive timestamps in input are taken to be UTC.

Customers are versioned, not upserted: every stored row is one version of a customer's
attributes, in force from its `valid_from`, else from its `ingested_at` (the ingest instant);
a customer's first version without a `valid_from` also covers the time before it (see
`clv.inputs.versions` and docs/decisions/customer-versions.md).

`acquisition_costs` and `assignments` are the decisions' tables (what acquiring customers cost,
who was in which arm of an experiment): optional, ingested like the others, never features.

`subscriptions` and `subscription_changes` are a subscription business's billing (optional): a
subscription row is the subscription's latest state, so a later row replaces it (`updates`);
its changes are point-in-time states (plan, seats, MRR from `ts` on). Why these rules:
docs/decisions/subscriptions.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal, get_args

TableName = Literal[
    "transactions",
    "customers",
    "events",
    "identities",
    "acquisition_costs",
    "assignments",
    "subscriptions",
    "subscription_changes",
]
TABLES: tuple[TableName, ...] = get_args(TableName)

TS_DTYPE = "datetime64[us, UTC]"


ColumnSource = Literal["input", "ingest"]
ColumnKind = Literal["string", "timestamp", "number", "category", "boolean"]
Default = float | bool
BOOLEAN_TEXT: dict[str, bool] = {
    "true": True,
    "false": False,
    "1": True,
    "0": False,
    "yes": True,
    "no": False,
}
"""The cells a boolean column reads (any case; Parquet booleans and the numbers 1 and 0 too)."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    required: bool
    doc: str
    product_of: tuple[str, ...] = ()
    """When the value is missing and all these columns are present: their product
    (amount = quantity x unit_price). A required column may then be absent from the file."""
    source: ColumnSource = "input"
    """`ingest`: set by ingest (never read from the file), stored with the rows."""
    nonnegative: bool = False
    """A number below zero is quarantined (`negative_value`)."""
    month: bool = False
    """A timestamp stored as the first instant of its UTC month (2024-01, 2024-01-01 and any
    time in January 2024 are all 2024-01-01T00:00Z); the future and `ingest.min_date` rules
    judge that instant, so the month in progress is never in the future."""
    default: Default | None = None
    """The value stored when the cell is missing or the column absent (seats: 1, trial: false)."""
    choices: tuple[str, ...] = ()
    """A category's only values, read in any case and stored as written here (billing_period:
    month, year); another value is quarantined (`invalid_choice`)."""
    not_before: str | None = None
    """Another timestamp of the row this one cannot precede (ended_at: started_at); an earlier
    value is quarantined (`end_before_start`)."""


@dataclass(frozen=True)
class Within:
    """Rows that happen during a row of another table: the row of `table` with the same `key`
    (stored, or ingested earlier in the same run). A row whose time is before that row's
    `start` or after its `end` (when it has one) is quarantined (`outside_subscription`); a row
    whose key that table does not hold (yet) is kept, unchecked, and counted (`unmatched`)."""

    table: TableName
    key: str
    start: str
    end: str


@dataclass(frozen=True)
class TableContract:
    name: TableName
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    """Columns that identify a row: a second row with the same key is the same row even if
    other values differ, so it replaces the stored one (`clv.inputs.reconcile.identity_key`:
    transactions are keyed by order and line, an order-level row by its order). A row without
    a key, or a table whose key is every column, is identified by all its columns (the
    exact-duplicate rule)."""
    time: str
    """The column `clv data status` shows the stored time range of."""
    versioned: bool = False
    """Rows with the same key are versions of one entity, not duplicates (customers)."""
    sorted_by: tuple[str, ...] = ()
    """The stored rows' order (then kept rows before new ones, each in file order)."""
    updates: bool = False
    """A row is its entity's latest state (subscriptions: ended_at filled in when it ends): of
    the rows of one file with one key the last is kept (the earlier, copies or not, are
    `superseded`), and it replaces a stored row with its key whatever
    `ingest.on_key_conflict` says."""
    within: Within | None = None
    """The table whose rows this table's rows happen during (`Within`; at the `time` column)."""

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


@dataclass(frozen=True)
class _Kind:
    """Columns of one kind, optional unless `required`: `_number("quantity", "units")`."""

    kind: ColumnKind

    def __call__(
        self,
        name: str,
        doc: str,
        *,
        required: bool = False,
        product_of: tuple[str, ...] = (),
        source: ColumnSource = "input",
        nonnegative: bool = False,
        month: bool = False,
        default: Default | None = None,
        choices: tuple[str, ...] = (),
        not_before: str | None = None,
    ) -> Column:
        return Column(
            name,
            self.kind,
            required,
            doc,
            product_of,
            source,
            nonnegative,
            month,
            default,
            choices,
            not_before,
        )


_string, _timestamp = _Kind("string"), _Kind("timestamp")
_number, _category = _Kind("number"), _Kind("category")
_boolean = _Kind("boolean")

CUSTOMER_ID = _string("customer_id", "the customer's id", required=True)

TRANSACTIONS = TableContract(
    name="transactions",
    columns=(
        CUSTOMER_ID,
        _timestamp("ts", "when the order happened (UTC)", required=True),
        _number(
            "amount",
            "order (or line) value; negative for a refund; else quantity x unit_price",
            required=True,
            product_of=("quantity", "unit_price"),
        ),
        _number("margin", "gross margin of the row; else amount x margin_rate"),
        _string("order_id", "order id"),
        _category("channel", "sales channel (web, app, store, ...)"),
        _string("line_id", "line of the order: rows are order lines"),
        _string("sku", "product of the line"),
        _number("quantity", "units on the line"),
        _number("unit_price", "price per unit"),
        _category("currency", "ISO currency code (stored: the workspace's)"),
        _string(
            "refund_of",
            "set by ingest on a cancellation or return: the order it refunds, when found",
            source="ingest",
        ),
    ),
    key=("customer_id", "order_id", "line_id"),
    time="ts",
    sorted_by=("ts",),
)

CUSTOMERS = TableContract(
    name="customers",
    columns=(
        CUSTOMER_ID,
        _timestamp("signup_ts", "when the customer signed up (UTC)"),
        _category("acquisition_channel", "how the customer was acquired"),
        _category("country", "ISO country code"),
        _category("plan", "plan or tier"),
        _timestamp("valid_from", "when these attributes took effect (UTC)"),
        _timestamp(
            "ingested_at",
            "when the row was ingested (UTC); a version without valid_from starts here",
            source="ingest",
        ),
    ),
    key=("customer_id",),
    versioned=True,
    time="signup_ts",
)

CUSTOMER_ATTRIBUTES: tuple[str, ...] = ("signup_ts", "acquisition_channel", "country", "plan")
"""What a customer version holds: a row that changes one of these is a new version."""

EVENTS = TableContract(
    name="events",
    columns=(
        CUSTOMER_ID,
        _timestamp("ts", "when the event happened (UTC)", required=True),
        _category("event_type", "login, support_ticket, feature_use, ...", required=True),
    ),
    key=("customer_id", "ts", "event_type"),
    time="ts",
    sorted_by=("ts",),
)

IDENTITIES = TableContract(
    name="identities",
    columns=(
        _string("alias_id", "another id of the customer (hashed e-mail, device)", required=True),
        _string("customer_id", "the canonical customer the alias belongs to", required=True),
        _timestamp(
            "valid_from",
            "when the alias became known to be this customer (UTC); missing: always",
        ),
    ),
    key=("alias_id", "customer_id", "valid_from"),
    time="valid_from",
)

ACQUISITION_COSTS = TableContract(
    name="acquisition_costs",
    columns=(
        _category(
            "channel",
            "the acquisition channel: the values of customers.acquisition_channel",
            required=True,
        ),
        _timestamp(
            "month",
            "the month the spend bought customers in (stored: its first instant, UTC); "
            "2024-01, 2024-01-01 or any time in the month",
            required=True,
            month=True,
        ),
        _number(
            "spend",
            "money spent on the channel that month, in the workspace's currency",
            required=True,
            nonnegative=True,
        ),
        _number(
            "new_customers",
            "customers the channel reports acquiring that month; missing: the customers "
            "table's signups count",
            nonnegative=True,
        ),
    ),
    key=("channel", "month"),
    time="month",
    sorted_by=("month", "channel"),
)
"""One row per acquisition channel and month: a corrected spend replaces the stored row."""

ASSIGNMENTS = TableContract(
    name="assignments",
    columns=(
        _string("experiment", "the experiment's name", required=True),
        CUSTOMER_ID,
        _category(
            "arm", "the arm the customer was assigned to: control, treatment, ...", required=True
        ),
        _timestamp("assigned_at", "when the customer was assigned (UTC)", required=True),
    ),
    key=("experiment", "customer_id"),
    time="assigned_at",
    sorted_by=("assigned_at",),
)
"""One arm per customer and experiment: a later row for the same pair replaces it (or is a
`key_conflict`)."""

BILLING_PERIOD_MONTHS: dict[str, int] = {"month": 1, "year": 12}
"""A subscriptions row's billing_period, in months."""
SUBSCRIPTION_CHANNEL = "subscription"
"""A transaction of this channel is a subscription's invoice, its order_id
`<subscription_id>-<invoice number>`: the contractual model reads the billing dates from them,
and the one-off part of a subscriber's value reads every other transaction."""
SUBSCRIPTION_ID = _string("subscription_id", "the subscription's id", required=True)

SUBSCRIPTIONS = TableContract(
    name="subscriptions",
    columns=(
        CUSTOMER_ID,
        SUBSCRIPTION_ID,
        _category("plan", "the plan subscribed to (from started_at until a change)", required=True),
        _number(
            "seats",
            "seats (licences) subscribed to; missing: 1",
            nonnegative=True,
            default=1.0,
        ),
        _number(
            "mrr",
            "monthly recurring revenue in the workspace's currency (an annual plan: its yearly "
            "price / 12)",
            required=True,
            nonnegative=True,
        ),
        _timestamp("started_at", "when the subscription started (UTC)", required=True),
        _timestamp(
            "ended_at",
            "when it ended (UTC); missing while it is active",
            not_before="started_at",
        ),
        _category(
            "billing_period",
            "how often it is billed: month or year",
            required=True,
            choices=tuple(BILLING_PERIOD_MONTHS),
        ),
        _boolean("trial", "a trial: true/false, 1/0, yes/no; missing: false", default=False),
    ),
    key=("subscription_id",),
    time="started_at",
    sorted_by=("started_at", "subscription_id"),
    updates=True,
)
"""One row per subscription, its latest state: a later row with its id replaces it (ended_at
filled in when it ends), whatever `ingest.on_key_conflict` says."""

SUBSCRIPTION_CHANGES = TableContract(
    name="subscription_changes",
    columns=(
        SUBSCRIPTION_ID,
        _timestamp("ts", "when the change took effect (UTC)", required=True),
        _category("plan", "the plan from ts on; missing: unchanged"),
        _number("seats", "seats from ts on; missing: unchanged", nonnegative=True),
        _number(
            "mrr",
            "monthly recurring revenue from ts on, in the workspace's currency",
            required=True,
            nonnegative=True,
        ),
    ),
    key=("subscription_id", "ts"),
    time="ts",
    sorted_by=("ts", "subscription_id"),
    within=Within("subscriptions", "subscription_id", "started_at", "ended_at"),
)
"""A subscription's state from `ts` on (an upgrade, a seat change, a discount): one row per
subscription and time; a corrected row replaces it (or is a `key_conflict`)."""

CONTRACTS: dict[TableName, TableContract] = {
    "transactions": TRANSACTIONS,
    "customers": CUSTOMERS,
    "events": EVENTS,
    "identities": IDENTITIES,
    "acquisition_costs": ACQUISITION_COSTS,
    "assignments": ASSIGNMENTS,
    "subscriptions": SUBSCRIPTIONS,
    "subscription_changes": SUBSCRIPTION_CHANGES,
}


class RejectReason(StrEnum):
    """Why a row went to quarantine; one per row, the first that applies."""

    MALFORMED_ROW = "malformed_row"
    """A CSV row with more or fewer fields than the header (its cells are kept by position)."""
    INVALID_ENCODING = "invalid_encoding"
    """A CSV row holding bytes that are not text in `ingest.encoding` (default UTF-8)."""
    MISSING_ID = "missing_customer_id"
    INVALID_ID = "invalid_id"
    """An id (a `*_id` column) holding a control character (NUL, tab, newline, ...) or longer
    than `ingest.max_id_length` characters."""
    BAD_TIMESTAMP = "unparseable_timestamp"
    AMBIGUOUS_DATE = "ambiguous_date"
    """A numeric date (01/02/2024) whose day-month order the file does not decide (no day above
    12 in one order only): set `ingest.dayfirst`."""
    UNKNOWN_TIMEZONE = "unknown_timezone"
    """A time-zone name that is not one offset (IST, BST: several zones): write an offset."""
    FUTURE_TIMESTAMP = "future_timestamp"
    BAD_AMOUNT = "non_numeric_amount"
    BAD_VALUE = "non_numeric_value"
    BAD_BOOLEAN = "non_boolean_value"
    """A boolean column (subscriptions: trial) holding other than true/false, 1/0 or yes/no
    (any case); a missing cell is the column's default."""
    NEGATIVE_VALUE = "negative_value"
    """A number below zero in a column that cannot be (acquisition_costs: spend,
    new_customers; subscriptions and subscription_changes: seats, mrr)."""
    INVALID_CHOICE = "invalid_choice"
    """A category outside its column's values (subscriptions: billing_period other than month
    or year, in any case)."""
    MISSING_VALUE = "missing_required_value"
    BEFORE_MIN_DATE = "before_min_date"
    """A timestamp before `ingest.min_date` (a default date such as 1899-12-30, a typo)."""
    END_BEFORE_START = "end_before_start"
    """A time before the one it cannot precede in its row (subscriptions: ended_at before
    started_at; equal is a subscription ended at once, kept)."""
    IMPLAUSIBLE_AMOUNT = "implausible_amount"
    """|amount| above `ingest.max_abs_amount` (default: AMOUNT_BOUND_FACTOR x the file's median
    nonzero |amount|)."""
    MIXED_CURRENCY = "mixed_currency"
    """A currency other than the workspace's (`ingest.currency`) without a rate to convert it."""
    OUTSIDE_SUBSCRIPTION = "outside_subscription"
    """A subscription_changes row at a ts before its subscription's started_at or after its
    ended_at (the subscription stored, or ingested earlier in the same run; a change of a
    subscription not ingested yet is kept, unchecked)."""
    DUPLICATE = "exact_duplicate"
    DUPLICATE_LINE = "duplicate_line"
    """The key of an earlier row of the file, other values: (customer_id, order_id, line_id)
    of transactions, (channel, month) of acquisition_costs, (experiment, customer_id) of
    assignments, (subscription_id, ts) of subscription_changes (of subscriptions, the last row
    of an id is kept and the earlier are superseded, not quarantined)."""
    KEY_CONFLICT = "key_conflict"
    """The key of a stored row with other values, under `ingest.on_key_conflict: quarantine`
    (the default, `replace`, stores the row in the stored one's place; a subscriptions row
    always replaces it)."""


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
