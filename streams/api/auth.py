"""API keys -> tenants.

Two sources, both read through Settings:

* `BULKSTREAM_API_KEYS`: comma-separated `tenant:key` pairs (for a secret
  store that injects the environment); the keys are hashed when read;
* `BULKSTREAM_API_KEYS_FILE`: lines of `tenant sha256:<hex>`, the SHA-256 of
  the key, so the file holds no key (`bulkstream hash-key KEY` prints one).
  Blank lines and lines starting with `#` are ignored.

Only hashes are kept in memory; a key is never logged.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from streams.settings import Settings

TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, hashes: dict[str, str]) -> None:
        self._tenants = hashes  # sha256 hex -> tenant

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeys:
        hashes: dict[str, str] = {}
        for entry in filter(None, (e.strip() for e in settings.api_keys.split(","))):
            tenant, sep, key = entry.partition(":")
            if not sep or not key:
                raise ValueError("BULKSTREAM_API_KEYS entries are `tenant:key`")
            hashes[key_hash(key)] = _tenant(tenant)
        if settings.api_keys_file is not None:
            hashes.update(cls._read_file(settings.api_keys_file))
        return cls(hashes)

    @staticmethod
    def _read_file(path: Path) -> dict[str, str]:
        hashes = {}
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or not re.fullmatch(r"sha256:[0-9a-f]{64}", parts[1]):
                raise ValueError(f"{path}:{number}: expected `tenant sha256:<64 hex>`")
            hashes[parts[1].removeprefix("sha256:")] = _tenant(parts[0])
        return hashes

    def tenant(self, authorization: str | None) -> str | None:
        if not authorization:
            return None
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self._tenants.get(key_hash(key.strip()))

    def __len__(self) -> int:
        return len(self._tenants)


def _tenant(name: str) -> str:
    if not TENANT.match(name):
        raise ValueError(f"invalid tenant name {name!r}: use letters, digits, _ . -")
    return name
