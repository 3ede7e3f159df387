"""Wardent: a reverse proxy and security gateway on uvloop and httptools."""

from wardent import native

__version__ = "0.1.0"

# Before any module of the compiled request path is imported (wardent/native.py).
HOT_PATH = native.install()
