"""Sealing secrets at rest (release env values) with a key the operator holds.

The key is a file (`DM_SECRET_KEY_FILE`, made 0600 on first start): back it up with the database,
or sealed values cannot be opened again. Fernet: AES-128-CBC with HMAC-SHA256, authenticated.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from docker_manager.util.files import write_new_file


class SealError(Exception):
    """A sealed value cannot be opened (another key, or tampered with)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_key_file(cls, path: Path) -> Sealer:
        """The key in `path`, made there (0600, never through a symlink) when missing. Blocking."""
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_new_file(path, Fernet.generate_key() + b"\n", 0o600)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            return cls(handle.read().strip())

    def seal(self, values: list[str]) -> str:
        return self._fernet.encrypt(json.dumps(values).encode()).decode()

    def open(self, sealed: str) -> list[str]:
        try:
            values = json.loads(self._fernet.decrypt(sealed.encode()))
        except (InvalidToken, ValueError) as exc:
            raise SealError("the sealed value cannot be opened with this key") from exc
        return [str(v) for v in values]
