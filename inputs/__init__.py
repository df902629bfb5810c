"""The data layer: generated worlds, ingest (contract, quarantine, identities, personal
data) and the readiness profile."""
