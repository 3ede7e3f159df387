"""Observability: metrics, the access log, application logs and liveness."""
