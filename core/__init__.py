"""The ground floor every layer imports: settings, data contracts, the offline store,
errors, service checks and what commands print."""
