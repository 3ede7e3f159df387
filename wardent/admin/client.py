"""The CLI's client of the admin API, and how it finds the admin listener.

The listener and token come from `-c FILE` (`listen.admin`,
`secrets.admin_token`) or from `WARDENT_ADMIN_URL` / `WARDENT_ADMIN_TOKEN`,
which win over the file when both are given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from wardent.config.load import ConfigError, load_settings
from wardent.config.schema import Address, SecretSource, parse_address

__all__ = ["DEFAULT_ADMIN_URL", "AdminClient", "AdminUnreachable", "admin_url", "resolve_admin"]

DEFAULT_ADMIN_URL = "http://127.0.0.1:9180"


class AdminUnreachable(Exception):
    """The admin listener did not answer (not running, wrong address, timed out)."""


class AdminClient:
    """`base_url` is http://HOST:PORT or unix:/path/to/admin.sock."""

    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _target(self) -> tuple[str, aiohttp.BaseConnector | None]:
        if self.base_url.startswith("unix:"):
            return "http://localhost", aiohttp.UnixConnector(path=self.base_url[len("unix:") :])
        return self.base_url, None

    async def request(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        """(status, body): the body is decoded JSON when the answer is JSON, else text.

        Raises AdminUnreachable when no admin listener answers at `base_url`.
        """
        root, connector = self._target()
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with (
                aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
                session.request(method, root + path, json=json, headers=headers) as response,
            ):
                if response.content_type == "application/json":
                    return response.status, await response.json()
                return response.status, await response.text()
        except (aiohttp.ClientConnectionError, OSError) as error:
            raise AdminUnreachable(
                f"cannot reach the admin API at {self.base_url}: {error}"
            ) from None
        except TimeoutError:
            raise AdminUnreachable(
                f"the admin API at {self.base_url} did not answer within {self.timeout:g}s"
            ) from None


def admin_url(address: Address) -> str:
    """The base URL of an admin listener address."""
    if address.unix_path is not None:
        return f"unix:{address.unix_path}"
    return f"http://{address}"


def resolve_admin(config_path: str | None, environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(base URL, token) of the admin API, from the config file and/or the environment.

    Raises ConfigError when `config_path` cannot be read for the admin listener.
    """
    url, token = DEFAULT_ADMIN_URL, None
    if config_path is not None:
        url, token = _from_config(config_path, environ)
    env_url = environ.get("WARDENT_ADMIN_URL", "").strip()
    env_token = environ.get("WARDENT_ADMIN_TOKEN", "").strip()
    if env_url:
        url = env_url
    if env_token:
        token = env_token
    return url, token


def _from_config(config_path: str, environ: Mapping[str, str]) -> tuple[str, str | None]:
    try:
        settings = load_settings(config_path, environ=dict(environ))
    except ConfigError as error:
        # The whole file may not validate here even when the admin part does:
        # the service's other secrets (systemd credentials, its environment)
        # are usually not visible to the operator's shell, and a reload of a
        # broken file should reach the server, which answers with the issues.
        found = _admin_part(config_path, environ)
        if found is None:
            raise error from None
        return found
    secret = settings.secrets.admin_token
    token = secret.value.decode() if secret is not None else None
    return admin_url(settings.listen.admin), token


def _admin_part(config_path: str, environ: Mapping[str, str]) -> tuple[str, str | None] | None:
    """Only `listen.admin` and `secrets.admin_token`, or None if even those do not read."""
    try:
        data = yaml.safe_load(Path(config_path).read_text())
        listen = data.get("listen") or {}
        address = parse_address(listen.get("admin", "127.0.0.1:9180"))
        token: str | None = None
        source = (data.get("secrets") or {}).get("admin_token")
        if source is not None:
            context = {"environ": environ, "base_dir": Path(config_path).absolute().parent}
            token = SecretSource.model_validate(source, context=context).value.decode()
    except Exception:
        return None
    return admin_url(address), token


def run_request(client: AdminClient, method: str, path: str, json: Any = None) -> tuple[int, Any]:
    """`client.request` from synchronous code (the CLI)."""
    return asyncio.run(client.request(method, path, json=json))
