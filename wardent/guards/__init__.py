"""The admit phase: guards that pass a request or return a Rejection."""
