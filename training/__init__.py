"""clv training component."""
