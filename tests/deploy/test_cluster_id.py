"""The local scripts' Kafka cluster ids: never one the storage tool takes for an option."""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "new_cluster_id.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("new_cluster_id", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_id_that_would_start_with_a_dash_is_drawn_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 0xF8 is 111110 in its first six bits: base64url's 62nd letter, "-".
    draws: Iterator[bytes] = iter([b"\xf8" + bytes(15), b"\x01" * 16])
    module = _load()
    monkeypatch.setattr(module.os, "urandom", lambda n: next(draws))
    cid = module.new_cluster_id()
    assert cid == base64.urlsafe_b64encode(b"\x01" * 16).decode().rstrip("=")


def test_ids_are_16_bytes_of_base64url_without_padding() -> None:
    module = _load()
    for _ in range(200):
        cid = module.new_cluster_id()
        assert not cid.startswith("-")
        assert "=" not in cid
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16
