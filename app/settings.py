"""Settings: one frozen object built from flags and an injectable environment.

Flags win over environment variables, which win over defaults (SPEC §2).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from app.eventlog import private_files

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_MAX_BODY_BYTES = 262_144
DEFAULT_DATA_DIR = "./data"
# BitByBit's own delivery timeout: a body still arriving after it is one the sender gave up on.
DEFAULT_BODY_TIMEOUT_SECONDS = 30


class SettingsError(Exception):
    """A setting is missing or unusable; the message says what to set."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to know, decided once at start-up."""

    secrets: tuple[bytes, ...] = ()
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    host: str = "127.0.0.1"
    port: int = 8080
    # Accept a data directory (and files) that its group may read: `--allow-shared-data-dir`.
    allow_shared_data_dir: bool = False

    def __repr__(self) -> str:
        # Secrets never reach a log line, even through a repr.
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "secrets"
        )
        return f"Settings(secrets=<{len(self.secrets)} configured>, {fields})"

    @property
    def events_path(self) -> Path:
        """The precious log."""
        return self.data_dir / "events.db"

    @property
    def projections_path(self) -> Path:
        """The disposable projection tables."""
        return self.data_dir / "projections.db"

    def require_event_log(self) -> None:
        """Refuse to report on, or rebuild from, a log that is not there.

        A mistyped `--data-dir` would otherwise quietly create an empty one.
        """
        if not self.events_path.exists():
            raise SettingsError(
                f"there is no event log at {self.events_path}: check --data-dir "
                "or BITBYBIT_DATA_DIR"
            )

    def require_private_data_dir(self) -> None:
        """Refuse to work in a data directory that other users can read or write.

        Every command that writes the data directory calls this first (SPEC §4): the
        files hold personal data, and the message says which `chmod` fixes each path.
        """
        found = private_files.exposures(self.data_dir, shared=self.allow_shared_data_dir)
        if not found:
            return
        allowed = (
            "with --allow-shared-data-dir its group may read, never write, and others nothing"
            if self.allow_shared_data_dir
            else "0700 for directories and 0600 for files"
        )
        message = f"{self.data_dir} holds personal data, so it must be private ({allowed}): "
        message += "; ".join(exposure.describe() for exposure in found)
        if len(found) > 1:
            message += ". All at once: " + " && ".join(exposure.fix for exposure in found)
        if not self.allow_shared_data_dir and all(exposure.shared_only for exposure in found):
            message += "; or, if its group must read it, --allow-shared-data-dir"
        raise SettingsError(message)

    def require_secret(self) -> None:
        """Refuse to run an endpoint that could not verify anything."""
        if not self.secrets:
            raise SettingsError(
                "no webhook signing secret configured: set BITBYBIT_WEBHOOK_SECRET "
                "(several separated by commas) or BITBYBIT_WEBHOOK_SECRET_FILE "
                "to the secret shown in BitByBit under Settings > Developer"
            )

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        *,
        data_dir: str | None = None,
        host: str | None = None,
        port: int | None = None,
        allow_shared_data_dir: bool = False,
    ) -> Settings:
        """Build settings from an environment mapping, overridden by any flag given."""
        return cls(
            secrets=_read_secrets(environ),
            data_dir=Path(data_dir or environ.get("BITBYBIT_DATA_DIR") or DEFAULT_DATA_DIR),
            tolerance_seconds=_read_int(
                environ, "BITBYBIT_TOLERANCE_SECONDS", DEFAULT_TOLERANCE_SECONDS
            ),
            max_body_bytes=_read_int(environ, "BITBYBIT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            body_timeout_seconds=_read_int(
                environ, "BITBYBIT_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS
            ),
            host=host or "127.0.0.1",
            port=8080 if port is None else port,
            allow_shared_data_dir=allow_shared_data_dir
            or _read_flag(environ, "BITBYBIT_ALLOW_SHARED_DATA_DIR"),
        )


def _read_secrets(environ: Mapping[str, str]) -> tuple[bytes, ...]:
    raw = environ.get("BITBYBIT_WEBHOOK_SECRET", "")
    secret_file = environ.get("BITBYBIT_WEBHOOK_SECRET_FILE", "")
    if secret_file:
        require_private_secret_file(Path(secret_file), "BITBYBIT_WEBHOOK_SECRET_FILE")
        try:
            raw = ",".join([raw, Path(secret_file).read_text(encoding="utf-8")])
        except OSError as exc:
            raise SettingsError(
                f"BITBYBIT_WEBHOOK_SECRET_FILE names {secret_file!r}, "
                f"which cannot be read: {exc.strerror}"
            ) from exc
    parts = (part.strip() for part in raw.replace("\n", ",").split(","))
    return tuple(dict.fromkeys(part.encode() for part in parts if part))


def require_private_secret_file(path: Path, variable: str) -> None:
    """Refuse to read a secret from a file that anyone but its owner can reach, as ssh does.

    `variable` is the setting that names the file, for the message. A missing file is
    left to the reader, which says it cannot be read.
    """
    try:
        exposure = private_files.secret_file_exposure(path)
    except FileNotFoundError:
        return
    if exposure is not None:
        raise SettingsError(
            f"{variable} names a secret file that other users can reach: {exposure.describe()}"
        )


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def _read_flag(environ: Mapping[str, str], name: str) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(f"{name} must be 1 or 0 (true or false), not {raw!r}")


def _read_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, not {value}")
    return value
