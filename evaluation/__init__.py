"""Metrics, calibration, PSI and the backtest protocol: pure functions that training and
monitoring share."""
