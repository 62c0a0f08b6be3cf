"""Operations: logs, metrics, the worker's monitor (accounting, drift alerts, status) and its HTTP endpoints."""
