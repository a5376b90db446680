"""Private files: created 0700/0600 whatever the umask; what is wider is found with its fix.

Tests run as root, which reads any file whatever its mode, so modes are checked with
`os.stat`, never by trying to read.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest

from app import files
from app.eventlog.schema import open_log

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The widest umask a caller could have: nothing masked."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("permissive_umask")
class TestCreation:
    """Under umask 0000, what the product creates is still private."""

    def test_data_dir_and_log_with_its_side_files(self, tmp_path: Path) -> None:
        """`open_log` makes the directory 0700 and events.db, -wal and -shm 0600."""
        data_dir = tmp_path / "data"
        conn = open_log(data_dir / "events.db")
        try:
            conn.execute("INSERT INTO write_probe VALUES (1, 'now', x'00')")
            names = {p.name for p in data_dir.iterdir()}
            assert {"events.db", "events.db-wal", "events.db-shm"} <= names
            assert mode(data_dir) == 0o700
            assert {p.name: mode(p) for p in data_dir.iterdir()} == dict.fromkeys(names, 0o600)
        finally:
            conn.close()

    def test_existing_directory_is_left_as_it_is(self, tmp_path: Path) -> None:
        """An operator's directory is checked elsewhere, never changed behind their back."""
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o750)
        files.make_private_dir(shared)
        assert mode(shared) == 0o750

    def test_create_private_file_refuses_an_existing_file(self, tmp_path: Path) -> None:
        """Exclusive creation: a backup's target is never overwritten."""
        target = tmp_path / "backup.db"
        files.create_private_file(target)
        assert mode(target) == 0o600
        target.write_bytes(b"kept")
        with pytest.raises(FileExistsError):
            files.create_private_file(target)
        assert target.read_bytes() == b"kept"

    def test_open_private_narrows_an_existing_file(self, tmp_path: Path) -> None:
        """A file left 0644 by an earlier release is 0600 once written again."""
        lock = tmp_path / "rebuild.lock"
        lock.write_bytes(b"old")
        lock.chmod(0o644)
        with files.open_private(lock) as out:
            out.write(b"new")
        assert (mode(lock), lock.read_bytes()) == (0o600, b"new")


PRIVATE_FILE = "chmod 600 {dir}/events.db"
SHARED_FILE = "chmod 640 {dir}/events.db"


def _exposed(tmp_path: Path, dir_mode: int, file_mode: int, *, shared: bool) -> dict[str, str]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "events.db").touch()
    (data_dir / "events.db").chmod(file_mode)
    data_dir.chmod(dir_mode)
    return {e.path.name: e.fix for e in files.exposures(data_dir, shared=shared)}


@pytest.mark.parametrize(
    ("dir_mode", "file_mode", "shared", "fixes"),
    [
        (0o700, 0o600, False, {}),
        (0o755, 0o600, False, {"data": "chmod 700 {dir}"}),
        (0o700, 0o644, False, {"events.db": PRIVATE_FILE}),
        (0o750, 0o640, False, {"data": "chmod 700 {dir}", "events.db": PRIVATE_FILE}),
        # What --allow-shared-data-dir accepts: group may read, never write; others nothing.
        (0o750, 0o640, True, {}),
        (0o755, 0o644, True, {"data": "chmod 750 {dir}", "events.db": SHARED_FILE}),
        (0o770, 0o660, True, {"data": "chmod 750 {dir}", "events.db": SHARED_FILE}),
        (0o701, 0o602, True, {"data": "chmod 750 {dir}", "events.db": SHARED_FILE}),
    ],
)
def test_exposures_name_the_chmod_that_fixes_each_path(
    tmp_path: Path, dir_mode: int, file_mode: int, shared: bool, fixes: dict[str, str]
) -> None:
    """Wider than 0700/0600 (0750/0640 when shared) is found, with the exact chmod."""
    found = _exposed(tmp_path, dir_mode, file_mode, shared=shared)
    data_dir = tmp_path / "data"
    assert found == {name: fix.format(dir=data_dir) for name, fix in fixes.items()}


def test_a_missing_data_dir_exposes_nothing(tmp_path: Path) -> None:
    """The product will create it private."""
    assert files.exposures(tmp_path / "not-yet") == []


@pytest.mark.parametrize(("file_mode", "refused"), [(0o600, False), (0o400, False), (0o640, True)])
def test_secret_file_may_be_read_by_its_owner_only(
    tmp_path: Path, file_mode: int, refused: bool
) -> None:
    """Even its group may not read a secret, as ssh treats a private key."""
    secret = tmp_path / "secret"
    secret.touch()
    secret.chmod(file_mode)
    exposure = files.secret_file_exposure(secret)
    assert (exposure is not None) == refused
    if exposure is not None:
        assert exposure.fix == f"chmod 600 {secret}"
