"""The backup archive: a tar stream, lz4-compressed, sealed with a passphrase
(`adapters/backup_cipher.py`); `manifest.json` is its last member and names every other one with
its size and sha256. Blocking functions: callers run them in a thread.

Reading checks as it goes and trusts nothing: a member's name must be one a backup writes (no
absolute path, no `..`, no link, no device), sizes are bounded, every checksum must match the
manifest, and the manifest must name exactly the members that came before it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import lz4.frame

from docker_manager import __version__
from docker_manager.adapters.backup_cipher import (
    MIN_PASSPHRASE,
    OpeningReader,
    Readable,
    SealedStreamError,
    SealingWriter,
    Writable,
)
from docker_manager.db.engine import schema_revisions
from docker_manager.errors import InvalidInput, Unsupported

FORMAT = "docker-manager-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAX_MEMBERS = 100_000
MAX_MANIFEST_BYTES = 64 << 20
COPY_CHUNK = 1 << 20  # (what a member is read in; the cipher seals 64 KiB chunks)
SPARE_BYTES = 64 << 20  # room a backup or a restore leaves on the disk it writes to
BLOCK = 512
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}"
_MEMBER_NAME = re.compile(
    r"(database/docker-manager\.(db|pgdump)|keys/(release-key|session-key|admin-token)|settings\.json"
    rf"|acme(/{_SEGMENT}){{1,8}}|sites/[0-9]{{1,2}}/{_SEGMENT}\.conf|certificates/{_SEGMENT}\.(crt|key))"
)
MAX_NAME = 240


def storable(name: str) -> bool:
    """Whether a backup holds a file by this name (a snapshot skips any other: a temporary
    file, a certificate named by hand with a space)."""
    return len(name) <= MAX_NAME and _MEMBER_NAME.fullmatch(name) is not None


def refused(detail: str) -> InvalidInput:
    """Not a backup this version can restore: damaged, cut, sealed with another passphrase, or
    holding something a backup never holds. Nothing was written."""
    return InvalidInput(detail, field="archive")


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    size: int
    sha256: str


@dataclass(slots=True)
class Manifest:
    schema_revision: str | None
    database: str  # "sqlite" or "postgresql"
    created_at: str
    version: str = __version__
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    members: list[Member] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(member.size for member in self.members)

    def as_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()


def read_passphrase(path: Path, *, creating: bool) -> bytes:
    """The passphrase in `path` (its last newline dropped). For a new archive it must be long
    enough, and the file readable by its owner only."""
    try:
        mode = path.stat().st_mode
        value = path.read_bytes().removesuffix(b"\n").removesuffix(b"\r")
    except OSError as exc:
        raise InvalidInput(
            f"cannot read the passphrase file {path}: {exc.strerror}", field="passphrase_file"
        ) from None
    if creating and mode & 0o077:
        raise InvalidInput(
            f"the passphrase file {path} is readable by others (mode {mode & 0o777:o}): chmod 600 it",
            field="passphrase_file",
        )
    check_passphrase(value, creating=creating)
    return value


def check_passphrase(value: bytes, *, creating: bool) -> None:
    if not value:
        raise InvalidInput("the passphrase is empty", field="passphrase")
    if creating and len(value) < MIN_PASSPHRASE:
        raise InvalidInput(
            f"a backup's passphrase needs at least {MIN_PASSPHRASE} characters", field="passphrase"
        )


class _Hashing(io.RawIOBase):
    """A file read through once, hashed on the way (tarfile reads exactly the size it was told)."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.digest.update(data)
        return data


def write_archive(
    out: Writable, passphrase: bytes, sources: Iterable[tuple[str, Path]], manifest: Manifest
) -> Manifest:
    """Seal `sources` (archive name, file) and then their manifest into `out`."""
    sealed = SealingWriter(out, passphrase)
    with (
        lz4.frame.open(sealed, "wb") as compressed,
        tarfile.open(fileobj=compressed, mode="w|", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name, path in sources:
            with path.open("rb") as handle:
                info = _info(name, os.fstat(handle.fileno()).st_size)
                hashing = _Hashing(handle)
                tar.addfile(info, hashing)
            manifest.members.append(Member(name, info.size, hashing.digest.hexdigest()))
        document = manifest.as_json()
        tar.addfile(_info(MANIFEST, len(document)), io.BytesIO(document))
    sealed.close()
    return manifest


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, 0
    info.uname = info.gname = ""
    return info


# Given a member's name before its bytes are read: where to write them (None: only check them).
Opener = Callable[[str], IO[bytes] | None]


def read_archive(source: Readable, passphrase: bytes, open_target: Opener | None = None) -> Manifest:
    """Check the whole archive (and hand each member to `open_target`): its manifest, once every
    member matched it. Raises InvalidInput (see `refused`), or Unsupported for a newer schema."""
    try:
        with lz4.frame.open(OpeningReader(source, passphrase), "rb") as tar:
            return _read(tar, open_target)
    except SealedStreamError as exc:
        raise refused(f"not restorable: {exc}") from None
    except (RuntimeError, EOFError) as exc:  # (lz4 raises RuntimeError)
        raise refused(f"not restorable: the archive is damaged ({exc})") from None


def _read(tar: IO[bytes], open_target: Opener | None) -> Manifest:
    seen: dict[str, Member] = {}
    folders: set[str] = set()  # (a member's name is never also the folder of another)
    manifest: Manifest | None = None
    while (header := _next_header(tar)) is not None:
        name, size = header
        if manifest is not None:
            raise refused("not restorable: a member after the manifest")
        if name == MANIFEST:
            if size > MAX_MANIFEST_BYTES:
                raise refused("not restorable: its manifest is too large")
            manifest = _manifest(_exactly(tar, size))
        elif not storable(name) or name in seen or name in folders or len(seen) >= MAX_MEMBERS:
            raise refused(f"not restorable: {name!r} is not a member a backup holds")
        else:
            parents = {name.rsplit("/", depth)[0] for depth in range(1, name.count("/") + 1)}
            if parents & seen.keys():
                raise refused(f"not restorable: {name!r} is not a member a backup holds")
            folders |= parents
            seen[name] = _copy(name, size, tar, open_target)
        _exactly(tar, -size % BLOCK)  # (padding to the next block)
    if manifest is None:
        raise refused("not restorable: the archive has no manifest")
    if {member.name: member for member in manifest.members} != seen:
        raise refused("not restorable: its members do not match its manifest (sizes or checksums differ)")
    if not any(name.startswith("database/") for name in seen):
        raise refused("not restorable: the archive holds no database")
    return manifest


def _next_header(tar: IO[bytes]) -> tuple[str, int] | None:
    """The next member's name and size, from a plain ustar header (what `write_archive` writes).
    Read by hand, not by `tarfile`: its parser reads PAX and GNU headers (where its slow patterns
    are) before anything could refuse them; here every other kind of header is refused."""
    block = _exactly(tar, BLOCK)
    if block == bytes(BLOCK):
        return None  # the end mark
    stored = _octal(block[148:156])
    if stored != sum(block[:148]) + 8 * 32 + sum(block[156:]):
        raise refused("not restorable: the archive is damaged (a header fails its checksum)")
    if block[257:263] != b"ustar\x00" or block[156:157] not in (b"0", b"\x00"):
        raise refused("not restorable: a member that is not a plain file (a link, a folder, a PAX header)")
    name, prefix = block[0:100].split(b"\x00", 1)[0], block[345:500].split(b"\x00", 1)[0]
    try:
        text = (prefix + b"/" + name if prefix else name).decode("ascii")
    except UnicodeDecodeError:
        raise refused("not restorable: a member's name is not ASCII") from None
    return text, _octal(block[124:136])


def _octal(field: bytes) -> int:
    digits = field.replace(b"\x00", b" ").strip()
    if not digits or len(digits) > 11 or not all(48 <= c <= 55 for c in digits):
        raise refused("not restorable: the archive is damaged (a header field is not a number)")
    return int(digits, 8)


def _exactly(tar: IO[bytes], size: int) -> bytes:
    data = tar.read(size)
    if len(data) != size:
        raise refused("not restorable: the archive is cut short")
    return data


def _copy(name: str, size: int, tar: IO[bytes], open_target: Opener | None) -> Member:
    digest = hashlib.sha256()
    target = open_target(name) if open_target else None
    left = size
    try:
        while left:
            chunk = _exactly(tar, min(COPY_CHUNK, left))
            left -= len(chunk)
            digest.update(chunk)
            if target is not None:
                target.write(chunk)
    finally:
        if target is not None:
            target.close()
    return Member(name, size, digest.hexdigest())


def _manifest(raw: bytes) -> Manifest:
    try:
        data: dict[str, Any] = json.loads(raw)
        members = [Member(str(m["name"]), int(m["size"]), str(m["sha256"])) for m in data["members"]]
        manifest = Manifest(
            schema_revision=data["schema_revision"],
            database=str(data["database"]),
            created_at=str(data["created_at"]),
            version=str(data["version"]),
            format=str(data["format"]),
            format_version=int(data["format_version"]),
            members=members,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise refused(f"not restorable: its manifest cannot be read ({exc})") from None
    if manifest.format != FORMAT or manifest.format_version > FORMAT_VERSION:
        raise Unsupported(
            f"the archive is format {manifest.format} {manifest.format_version}, written by docker-manager "
            f"{manifest.version}: this version ({__version__}) reads {FORMAT} {FORMAT_VERSION}; restore "
            "with a version at least as new"
        )
    if manifest.schema_revision is not None and manifest.schema_revision not in schema_revisions():
        raise Unsupported(
            f"the archive's database is at schema revision {manifest.schema_revision!r}, written by "
            f"docker-manager {manifest.version}: newer than this version ({__version__}, newest "
            f"{schema_revisions()[-1]!r}) knows; restore it with that version or a newer one"
        )
    return manifest
