"""Data sources: the feature snapshots that `clv features build` writes.

The path is relative to the Feast repo_path, which clv sets to the workspace's state folder
(`<ws>/.clv`), so the source resolves to `<ws>/.clv/offline/features/customer_features.parquet`
and nothing depends on the code tree or the current directory. (Feast's DuckDB reader does not
resolve relative paths itself; `clv.features.feast_io` resolves it with
`FileSource.get_uri_for_file_path(repo_path, path)` before apply.)
"""

from __future__ import annotations

from feast import FileSource

customer_features_source = FileSource(
    name="customer_features",
    path="offline/features/customer_features.parquet",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
    description="Monthly (by default) snapshots of every known customer's features.",
)
