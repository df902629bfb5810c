"""The CRM trigger adapter: POST the at-risk high-value customers to a configured webhook."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class WebhookResult:
    url: str
    status: int | None
    error: str | None
    customers: int

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def post_at_risk(
    url: str, payload: Mapping[str, object], *, timeout: float = 10.0
) -> WebhookResult:
    """POST `payload` as JSON; never raises (the result says what happened)."""
    customers = payload.get("customers")
    count = len(customers) if isinstance(customers, list) else 0
    try:
        response = httpx.post(url, json=dict(payload), timeout=timeout)
    except httpx.HTTPError as exc:
        return WebhookResult(url, None, f"{type(exc).__name__}: {exc}", count)
    error = None if response.is_success else f"HTTP {response.status_code}"
    return WebhookResult(url, response.status_code, error, count)
