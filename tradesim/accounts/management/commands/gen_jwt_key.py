"""Writes a new RS256 private key (PEM, mode 0600) for local development."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tradesim.accounts.keys import generate_private_key_pem


class Command(BaseCommand):
    help = "Generate an RSA private key for signing JWTs (default: DATA_DIR/jwt-private.pem)."
    # The whole point is to run before a key exists, when the key check would fail.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", help="where to write the key (PEM)")
        parser.add_argument("--force", action="store_true", help="overwrite an existing file")
        parser.add_argument("--bits", type=int, default=3072)

    def handle(self, *args: Any, **options: Any) -> None:
        config = settings.TRADESIM
        target = options["output"] or config.jwt_private_key_file or config.jwt_default_key_file
        path = Path(target)
        if path.exists() and not options["force"]:
            raise CommandError(f"{path} exists; pass --force to replace it")
        if options["bits"] < 2048:
            raise CommandError("--bits must be at least 2048")
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = generate_private_key_pem(options["bits"])
        # Created 0600 from the start: never world-readable, not even for a moment.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        self.stdout.write(f"wrote {path}")
