"""Typed results that flatten to numbers: every field as a float (JSON reports, MLflow metrics)."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class FloatRecord:
    """Mixin of a dataclass whose fields are all numbers: `as_dict` gives each as a float."""

    def as_dict(self: DataclassInstance) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}
