"""Decisions from CLV: cohorts, channels (CAC:CLV), experiments, retention, the dashboard."""
