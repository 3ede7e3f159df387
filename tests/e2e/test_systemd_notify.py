"""`wardent run` speaks systemd's notify protocol on a real NOTIFY_SOCKET."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

from tests.support.processes import Upstream, Wardent, write_config


def test_ready_once_serving_and_stopping_on_sigterm(tmp_path: Path, upstream: Upstream) -> None:
    with tempfile.TemporaryDirectory(prefix="wd-", dir="/tmp") as short:
        address = str(Path(short) / "notify")
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        receiver.bind(address)
        receiver.settimeout(10)
        try:
            wardent = Wardent(write_config(tmp_path, upstream.url), env={"NOTIFY_SOCKET": address})
            try:
                ready = receiver.recv(4096).decode()
                assert "READY=1" in ready.splitlines()
                assert f"MAINPID={wardent.proc.pid}" in ready
                # READY comes once the listener accepts connections.
                with socket.create_connection((wardent.host, wardent.port), timeout=2):
                    pass
            finally:
                code = wardent.stop()
            stopping = receiver.recv(4096).decode()
            assert "STOPPING=1" in stopping.splitlines()
            assert code == 0
        finally:
            receiver.close()


def test_no_notify_socket_is_fine(tmp_path: Path, upstream: Upstream) -> None:
    wardent = Wardent(write_config(tmp_path, upstream.url), env={"NOTIFY_SOCKET": ""})
    assert wardent.stop() == 0
