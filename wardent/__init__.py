"""Wardent: a reverse proxy and security gateway on uvloop and httptools."""

__version__ = "0.1.0"
