"""clv features component."""
