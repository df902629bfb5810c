"""clv monitoring component."""
