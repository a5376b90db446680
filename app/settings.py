"""Settings: one frozen object built from flags and an injectable environment.

Flags win over environment variables, which win over defaults (SPEC §2).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from app import files

if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULT_TOLERANCE_SECONDS = 300
DEFAULT_MAX_BODY_BYTES = 262_144
DEFAULT_DATA_DIR = "./data"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_LOG_LEVEL = "info"
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_API_URL = "https://api.bitbybit.studio/customer/open/v1"
DEFAULT_API_KEY_HEADER = "x-api-key"
DEFAULT_PUBLISH_SCHEMA = "bitbybit"
# PostgreSQL's identifiers hold 63 bytes; the publisher builds beside in `<schema>__building`.
PUBLISH_SCHEMA_MAX_BYTES = 63 - len("__building")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# BitByBit's own delivery timeout: a body still arriving after it is one the sender gave up on.
DEFAULT_BODY_TIMEOUT_SECONDS = 30
# SPEC §3: every delivery is answered within this many seconds of its last byte, well
# inside BitByBit's 30 s: one the log cannot take by then is refused (503), not left to
# time out. Not an environment setting; tests shorten it.
DEFAULT_ANSWER_SECONDS = 15.0


class SettingsError(Exception):
    """A setting is missing or unusable; the message says what to set."""


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service needs to know, decided once at start-up."""

    secrets: tuple[bytes, ...] = ()
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    log_level: str = DEFAULT_LOG_LEVEL
    body_timeout_seconds: float = DEFAULT_BODY_TIMEOUT_SECONDS
    answer_seconds: float = DEFAULT_ANSWER_SECONDS
    # Accept a data directory (and files) that its group may read: `--allow-shared-data-dir`.
    allow_shared_data_dir: bool = False
    # Open API access for `sync` (SPEC §8); the key is a secret like the signing secrets.
    api_key: str = ""
    api_url: str = DEFAULT_API_URL
    api_key_header: str = DEFAULT_API_KEY_HEADER
    sync_every_seconds: int | None = None
    # Publishing to PostgreSQL (SPEC §12); the URL may hold a password: a secret too.
    publish_url: str = ""
    publish_schema: str = DEFAULT_PUBLISH_SCHEMA

    def __repr__(self) -> str:
        # Secrets never reach a log line, even through a repr.
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in {"secrets", "api_key", "publish_url"}
        )
        key = "<set>" if self.api_key else "<unset>"
        url = "<set>" if self.publish_url else "<unset>"
        return (
            f"Settings(secrets=<{len(self.secrets)} configured>, api_key={key}, "
            f"publish_url={url}, {fields})"
        )

    @property
    def events_path(self) -> Path:
        """The precious log."""
        return self.data_dir / "events.db"

    @property
    def projections_path(self) -> Path:
        """The disposable projection tables."""
        return self.data_dir / "projections.db"

    @property
    def sync_path(self) -> Path:
        """Where a sync pass stands (losing it costs one pass starting over)."""
        return self.data_dir / "sync.db"

    @property
    def rebuild_lock_path(self) -> Path:
        """Held by a rebuild, its check, a forget and serve's sweep: one at a time."""
        return self.data_dir / "rebuild.lock"

    @property
    def sync_lock_path(self) -> Path:
        """Held by a sync pass: one at a time."""
        return self.data_dir / "sync.lock"

    def scratch_path(self, suffix: str = "") -> Path:
        """Where a rebuild builds new tables (one scratch database per projection)."""
        return self.data_dir / f"rebuild-scratch{suffix}.db"

    def scratch_leftovers(self) -> list[Path]:
        """Every scratch file (and its `-wal`, `-shm`) a rebuild left in the data directory."""
        return sorted(self.data_dir.glob("rebuild-scratch*"))

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
        found = files.exposures(self.data_dir, shared=self.allow_shared_data_dir)
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

    def require_api_key(self) -> None:
        """Refuse to sync without a key: every Open API request would be a 401."""
        if not self.api_key:
            raise SettingsError(
                "no Open API key configured: set BITBYBIT_API_KEY (or BITBYBIT_API_KEY_FILE) "
                "to a key from BitByBit's Settings > Developer with READ on customers, "
                "orders and products"
            )

    @classmethod
    def from_env(  # noqa: PLR0913 - one keyword per flag that overrides the environment
        cls,
        environ: Mapping[str, str],
        *,
        data_dir: str | None = None,
        host: str | None = None,
        port: int | None = None,
        allow_shared_data_dir: bool = False,
        log_level: str | None = None,
        sync_every: str | None = None,
    ) -> Settings:
        """Build settings from an environment mapping, overridden by any flag given."""
        return cls(
            secrets=_read_secrets(environ),
            data_dir=Path(data_dir or environ.get("BITBYBIT_DATA_DIR") or DEFAULT_DATA_DIR),
            tolerance_seconds=_read_int(
                environ, "BITBYBIT_TOLERANCE_SECONDS", DEFAULT_TOLERANCE_SECONDS
            ),
            max_body_bytes=_read_int(environ, "BITBYBIT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            host=host or environ.get("BITBYBIT_HOST", "").strip() or DEFAULT_HOST,
            port=_read_port(environ) if port is None else port,
            log_level=_read_log_level(log_level or environ.get("BITBYBIT_LOG_LEVEL", "")),
            body_timeout_seconds=_read_int(
                environ, "BITBYBIT_BODY_TIMEOUT_SECONDS", DEFAULT_BODY_TIMEOUT_SECONDS
            ),
            allow_shared_data_dir=allow_shared_data_dir
            or _read_flag(environ, "BITBYBIT_ALLOW_SHARED_DATA_DIR"),
            api_key=_read_secret(environ, "BITBYBIT_API_KEY"),
            api_url=(environ.get("BITBYBIT_API_URL") or DEFAULT_API_URL).rstrip("/"),
            api_key_header=environ.get("BITBYBIT_API_KEY_HEADER") or DEFAULT_API_KEY_HEADER,
            sync_every_seconds=parse_duration(
                sync_every or environ.get("BITBYBIT_SYNC_EVERY", ""), "BITBYBIT_SYNC_EVERY"
            ),
            publish_url=_read_secret(environ, "BITBYBIT_PUBLISH_URL"),
            publish_schema=check_publish_schema(
                environ.get("BITBYBIT_PUBLISH_SCHEMA", "").strip() or DEFAULT_PUBLISH_SCHEMA,
                "BITBYBIT_PUBLISH_SCHEMA",
            ),
        )


def check_publish_schema(name: str, source: str) -> str:
    """The schema name, if PostgreSQL can hold it and the one it is built beside in."""
    if not 1 <= len(name.encode()) <= PUBLISH_SCHEMA_MAX_BYTES:
        raise SettingsError(
            f"{source} must be a schema name of 1 to {PUBLISH_SCHEMA_MAX_BYTES} bytes, "
            f"not one of {len(name.encode())}"
        )
    return name


def parse_duration(text: str, name: str) -> int | None:
    """Seconds for `30s`, `15m`, `6h` or `1d`; None for an empty text (off)."""
    raw = text.strip().lower()
    if not raw:
        return None
    number, unit = raw[:-1], raw[-1:]
    if unit not in _DURATION_UNITS or not number.isdigit() or int(number) <= 0:
        raise SettingsError(
            f"{name} must be a positive whole number with a unit s, m, h or d "
            f"(such as 30s, 15m, 6h, 1d), not {text!r}"
        )
    return int(number) * _DURATION_UNITS[unit]


def _read_secret(environ: Mapping[str, str], name: str) -> str:
    """A secret from `name`, or else from the file `name_FILE` names (refused if exposed)."""
    value = environ.get(name, "").strip()
    if value:
        return value
    return (_secret_file_text(environ, name) or "").strip()


def _read_secrets(environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The signing secrets: the variable's and the file's together, during a rotation."""
    raw = environ.get("BITBYBIT_WEBHOOK_SECRET", "")
    from_file = _secret_file_text(environ, "BITBYBIT_WEBHOOK_SECRET")
    if from_file is not None:
        raw = f"{raw},{from_file}"
    parts = (part.strip() for part in raw.replace("\n", ",").split(","))
    return tuple(dict.fromkeys(part.encode() for part in parts if part))


def _secret_file_text(environ: Mapping[str, str], name: str) -> str | None:
    """What the file `name_FILE` names holds; None when it is not set."""
    variable = f"{name}_FILE"
    path = environ.get(variable, "")
    if not path:
        return None
    require_private_secret_file(Path(path), variable)
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(
            f"{variable} names {path!r}, which cannot be read: {exc.strerror}"
        ) from exc


def require_private_secret_file(path: Path, variable: str) -> None:
    """Refuse to read a secret from a file that anyone but its owner can reach, as ssh does.

    `variable` is the setting that names the file, for the message. A missing file is
    left to the reader, which says it cannot be read.
    """
    try:
        exposure = files.secret_file_exposure(path)
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


def _read_port(environ: Mapping[str, str]) -> int:
    port = _read_int(environ, "BITBYBIT_PORT", DEFAULT_PORT)
    if port > 65535:
        raise SettingsError(f"BITBYBIT_PORT must be a TCP port (1-65535), not {port}")
    return port


def _read_log_level(raw: str) -> str:
    """One of `LOG_LEVELS`, whatever its case; blank means the default."""
    level = raw.strip().lower() or DEFAULT_LOG_LEVEL
    if level not in LOG_LEVELS:
        raise SettingsError(
            f"BITBYBIT_LOG_LEVEL (or --log-level) must be one of {', '.join(LOG_LEVELS)}, "
            f"not {raw.strip()!r}"
        )
    return level
