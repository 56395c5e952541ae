"""API keys -> tenants: env pairs, hash-only key files, rejections."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.api.auth import ApiKeys, key_hash
from streams.settings import Settings


def test_keys_from_the_environment_and_a_hash_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# tenant sha256:<hex>\n\nglobex sha256:{key_hash('sk-globex')}\n")
    keys = ApiKeys.from_settings(
        Settings(api_keys="acme:sk-acme, initech:sk-ini", api_keys_file=keys_file)
    )
    assert len(keys) == 3
    assert keys.tenant("Bearer sk-acme") == "acme"
    assert keys.tenant("bearer sk-ini") == "initech"
    assert keys.tenant("Bearer sk-globex") == "globex"
    assert "sk-globex" not in keys_file.read_text()
    for header in (None, "", "Bearer", "Bearer ", "Basic sk-acme", "Bearer sk-nope", "sk-acme"):
        assert keys.tenant(header) is None


@pytest.mark.parametrize(
    ("api_keys", "file_text"),
    [
        ("acme", None),
        ("ac me:key", None),
        (None, "acme sk-plain-key\n"),
        (None, "acme sha256:abc\n"),
    ],
)
def test_malformed_key_configuration_is_refused(
    tmp_path: Path, api_keys: str | None, file_text: str | None
) -> None:
    keys_file = None
    if file_text is not None:
        keys_file = tmp_path / "keys"
        keys_file.write_text(file_text)
    with pytest.raises(ValueError, match="tenant"):
        ApiKeys.from_settings(Settings(api_keys=api_keys or "", api_keys_file=keys_file))
