"""Entities: who the features describe."""

from __future__ import annotations

from feast import Entity, ValueType

customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A customer, identified by the customer_id of the transaction log.",
)
