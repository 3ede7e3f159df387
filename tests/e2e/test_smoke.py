from __future__ import annotations

import urllib.request

from tests.support.processes import Wardent


def test_forwards_a_request(wardent: Wardent) -> None:
    with urllib.request.urlopen(wardent.url + "/echo") as response:
        assert response.status == 200
        assert response.headers["X-Request-ID"]
