"""systemd's notify protocol: one datagram to $NOTIFY_SOCKET per state change.

The protocol is a single `sendto` of `KEY=VALUE` lines, so it is spoken
directly rather than through a library. Without NOTIFY_SOCKET (not started by
systemd, or Type=simple) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("wardent.liveness")


class SystemdNotifier:
    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.address: str | None = None
        if address:
            # "@name" is a socket in the abstract namespace: a leading NUL byte.
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, state: str) -> bool:
        """Send `state` (e.g. "READY=1"); False if it could not be delivered."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                self._socket.setblocking(False)
            self._socket.sendto(state.encode(), self.address)
        except OSError as error:
            log.warning("sd_notify failed", extra={"state": state, "error": str(error)})
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight requests")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
