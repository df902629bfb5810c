"""Shared pieces of the model tests: a judgement world's training data, read through the
feature build's Parquet file (kept in benchmarks.worlds, which the model_quality benchmark
uses too, since benchmarks do not import tests)."""

from __future__ import annotations

from benchmarks.worlds import ParquetSource, world_training_data

__all__ = ["ParquetSource", "world_training_data"]
