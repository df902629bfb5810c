"""clv: the shared core of the Customer Lifetime Value platform.

Settings, data contracts, errors and the CLI root. Every component imports this
package; it imports no component except lazily, from the CLI root.
"""

from __future__ import annotations

__version__ = "0.1.0"
