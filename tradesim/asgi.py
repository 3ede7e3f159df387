"""The ASGI application (uvicorn tradesim.asgi:application).

The signing key is loaded here, before the first request: a missing or bad key stops
the server at start-up with a message naming the variable, instead of failing on the
first login.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradesim.settings")

application = get_asgi_application()

from tradesim.accounts.keys import signing_keys  # noqa: E402  (needs the app registry)

signing_keys()
