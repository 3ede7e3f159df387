"""The RS256 signing key: from TRADESIM_JWT_PRIVATE_KEY (PEM, or base64 of PEM), or from
the file named by TRADESIM_JWT_PRIVATE_KEY_FILE, or from DATA_DIR/jwt-private.pem (what
`manage.py gen_jwt_key` writes).

A missing, empty or undecodable key is an `ImproperlyConfigured` naming the variable.
Never a fallback: an earlier app decoded an empty variable into garbage bytes and
signed production tokens with them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from tradesim.config import AppConfig
from tradesim.env import read_secret_file

KEY_VAR = "TRADESIM_JWT_PRIVATE_KEY"
FILE_VAR = "TRADESIM_JWT_PRIVATE_KEY_FILE"
MIN_KEY_BITS = 2048
_PEM_MARKER = b"-----BEGIN"


@dataclass(frozen=True)
class SigningKeys:
    private_key: rsa.RSAPrivateKey
    public_key: rsa.RSAPublicKey
    # Key id in the JWT header: a thumbprint of the public key, so a rotated key's
    # tokens are recognisably different.
    kid: str


def decode_private_key(variable: str, text: str) -> rsa.RSAPrivateKey:
    """PEM text, or base64 of PEM text, into an RSA private key of at least 2048 bits."""
    stripped = text.strip()
    if not stripped:
        raise ImproperlyConfigured(f"{variable} is empty")
    data = stripped.encode("ascii", errors="replace")
    if not data.startswith(_PEM_MARKER):
        try:
            data = base64.b64decode(b"".join(data.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(
                f"{variable} is neither a PEM private key nor base64 of one"
            ) from None
        if not data.strip().startswith(_PEM_MARKER):
            raise ImproperlyConfigured(
                f"{variable} is valid base64 but does not decode to a PEM private key"
            )
    try:
        key = serialization.load_pem_private_key(data.strip(), password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"{variable} is not a readable PEM private key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(f"{variable} must be an RSA key for RS256")
    if key.key_size < MIN_KEY_BITS:
        raise ImproperlyConfigured(
            f"{variable} is a {key.key_size}-bit RSA key; at least {MIN_KEY_BITS} bits required"
        )
    return key


def load_signing_keys(config: AppConfig) -> SigningKeys:
    if config.jwt_private_key is not None:
        key = decode_private_key(KEY_VAR, config.jwt_private_key)
    elif config.jwt_private_key_file is not None:
        if not config.jwt_private_key_file.strip():
            raise ImproperlyConfigured(f"{FILE_VAR} is set but empty")
        path = Path(config.jwt_private_key_file)
        key = decode_private_key(f"{FILE_VAR} ({path})", read_secret_file(FILE_VAR, path))
    elif config.jwt_default_key_file.is_file():
        path = config.jwt_default_key_file
        key = decode_private_key(str(path), read_secret_file(str(path), path))
    else:
        raise ImproperlyConfigured(
            f"{KEY_VAR} is not set: set it (PEM or base64 of PEM) or {FILE_VAR}, or for local "
            f"development run `python -m tradesim.manage gen_jwt_key` to create "
            f"{config.jwt_default_key_file}"
        )
    public_key = key.public_key()
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    kid = base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode().rstrip("=")
    return SigningKeys(private_key=key, public_key=public_key, kid=kid)


@functools.cache
def _keys_for(config: AppConfig) -> SigningKeys:
    return load_signing_keys(config)


def signing_keys() -> SigningKeys:
    """The keys for the current settings, loaded once (per settings object)."""
    return _keys_for(settings.TRADESIM)


def generate_private_key_pem(bits: int = 3072) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
