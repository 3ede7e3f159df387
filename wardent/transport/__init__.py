"""The lean transport: uvloop Protocols and httptools on both sides."""
