"""clv registry component."""
