"""clv serving component."""
