"""Telemetry: the Prometheus metrics, the per-request record the access log is written from, and
the log format. Every layer reports here; it imports only the standard library and its packages."""
