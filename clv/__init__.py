"""clv: the Customer Lifetime Value platform, one import namespace.

Each top-level folder of the checkout is a subpackage: `core/` is `clv.core`, `training/` is
`clv.training`, and so on (pyproject.toml maps them; a wheel installs them under `clv/`).
Imports point down the layers in `SUBPACKAGES` only; `make lint` enforces it.
"""

from __future__ import annotations

__version__ = "0.1.0"

SUBPACKAGES = (
    "core",
    "inputs",
    "features",
    "feature_repo",
    "model",
    "evaluation",
    "training",
    "registry",
    "serving",
    "monitoring",
    "decisions",
    "jobs",
    "cli",
)
"""The subpackages, lowest layer first (the layer contract in pyproject.toml lists them)."""
