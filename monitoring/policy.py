"""The monitoring verdict: a pure decision over the share of drifted columns."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    """What the monitor recommends."""

    OK = "OK"
    WARN = "WARN"
    RETRAIN = "RETRAIN"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]


def decide(drift_share: float, *, warn: float, retrain: float) -> Decision:
    """RETRAIN when drift_share >= retrain, WARN when >= warn, else OK (bounds inclusive)."""
    if warn > retrain:
        raise ValueError(f"warn threshold {warn} exceeds retrain threshold {retrain}")
    if math.isnan(drift_share):
        return Decision(Verdict.WARN, ("no comparable columns: drift could not be measured",))
    share = f"drifted column share {drift_share:.3f}"
    if drift_share >= retrain:
        return Decision(Verdict.RETRAIN, (f"{share} >= retrain threshold {retrain:.3f}",))
    if drift_share >= warn:
        return Decision(Verdict.WARN, (f"{share} >= warn threshold {warn:.3f}",))
    return Decision(Verdict.OK, (f"{share} < warn threshold {warn:.3f}",))
