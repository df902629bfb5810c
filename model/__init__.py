"""The model bundle training writes and serving loads, and the baseline math scored
beside it."""
