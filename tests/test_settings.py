"""Settings from flags and an injected environment; `serve` refuses to run without a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import cli
from app.settings import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_TOLERANCE_SECONDS,
    Settings,
    SettingsError,
)


class TestSecrets:
    """Signing secrets: rotation, files, and never shown."""

    def test_comma_separated_secrets(self) -> None:
        """Several secrets separated by commas are all kept, trimmed, blanks dropped."""
        settings = Settings.from_env({"BITBYBIT_WEBHOOK_SECRET": " old , new ,, "})
        assert settings.secrets == (b"old", b"new")

    def test_secret_file(self, tmp_path: Path) -> None:
        """A secret file, one secret a line or comma-separated, adds to the variable."""
        path = tmp_path / "secret"
        path.write_text("from-file\nsecond,third\n", encoding="utf-8")
        path.chmod(0o600)  # a secret file others can read is refused
        settings = Settings.from_env(
            {"BITBYBIT_WEBHOOK_SECRET": "from-env", "BITBYBIT_WEBHOOK_SECRET_FILE": str(path)}
        )
        assert settings.secrets == (b"from-env", b"from-file", b"second", b"third")

    def test_unreadable_secret_file_is_a_settings_error(self, tmp_path: Path) -> None:
        """A secret file that cannot be read is named in the error."""
        missing = tmp_path / "nope"
        with pytest.raises(SettingsError, match="BITBYBIT_WEBHOOK_SECRET_FILE"):
            Settings.from_env({"BITBYBIT_WEBHOOK_SECRET_FILE": str(missing)})

    def test_no_secret_is_refused_with_what_to_set(self) -> None:
        """require_secret() without any non-empty secret names the variable to set."""
        settings = Settings.from_env({"BITBYBIT_WEBHOOK_SECRET": " , "})
        with pytest.raises(SettingsError, match="BITBYBIT_WEBHOOK_SECRET"):
            settings.require_secret()

    def test_repr_does_not_show_secrets(self) -> None:
        """The repr (and so any log of the settings) counts secrets but never shows them."""
        settings = Settings.from_env({"BITBYBIT_WEBHOOK_SECRET": "hunter2-secret,s3cond"})
        for text in (repr(settings), str(settings)):
            assert "hunter2-secret" not in text
            assert "s3cond" not in text
            assert "2 configured" in text


class TestPublishURL:
    """The PostgreSQL URL of `publish` is a secret like the signing secret."""

    URL = "postgresql://mirror:s3cret-pw@db.example/shop"

    def test_from_the_variable_or_a_private_file(self, tmp_path: Path) -> None:
        """The variable wins; else the file, trimmed; the schema defaults to bitbybit."""
        path = tmp_path / "publish-url"
        path.write_text(f"{self.URL}\n", encoding="utf-8")
        path.chmod(0o600)
        from_file = Settings.from_env({"BITBYBIT_PUBLISH_URL_FILE": str(path)})
        assert (from_file.publish_url, from_file.publish_schema) == (self.URL, "bitbybit")
        both = Settings.from_env(
            {
                "BITBYBIT_PUBLISH_URL": "postgresql://other/db",
                "BITBYBIT_PUBLISH_URL_FILE": str(path),
                "BITBYBIT_PUBLISH_SCHEMA": " shop ",
            }
        )
        assert (both.publish_url, both.publish_schema) == ("postgresql://other/db", "shop")

    def test_a_schema_postgresql_cannot_name_is_refused(self) -> None:
        """53 bytes at most: the publisher builds beside in `<schema>__building`."""
        assert Settings.from_env({"BITBYBIT_PUBLISH_SCHEMA": "s" * 53}).publish_schema == "s" * 53
        with pytest.raises(SettingsError, match=r"BITBYBIT_PUBLISH_SCHEMA must be .* 1 to 53"):
            Settings.from_env({"BITBYBIT_PUBLISH_SCHEMA": "s" * 54})

    def test_a_file_others_can_read_is_refused(self, tmp_path: Path) -> None:
        """As for the signing secret: the error names the variable, never the URL."""
        path = tmp_path / "publish-url"
        path.write_text(self.URL, encoding="utf-8")
        path.chmod(0o644)
        with pytest.raises(SettingsError, match="BITBYBIT_PUBLISH_URL_FILE") as refused:
            Settings.from_env({"BITBYBIT_PUBLISH_URL_FILE": str(path)})
        assert "s3cret-pw" not in str(refused.value)

    def test_repr_does_not_show_the_url(self) -> None:
        """Only whether it is set."""
        settings = Settings.from_env({"BITBYBIT_PUBLISH_URL": self.URL})
        assert "s3cret-pw" not in repr(settings)
        assert "publish_url=<set>" in repr(settings)


class TestValues:
    """The other settings, their defaults and their validation."""

    def test_defaults(self) -> None:
        """An empty environment gives the SPEC's defaults."""
        settings = Settings.from_env({})
        assert settings.data_dir == Path("./data")
        assert settings.tolerance_seconds == DEFAULT_TOLERANCE_SECONDS == 300
        assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 262_144
        assert settings.body_timeout_seconds == 30
        assert (settings.host, settings.port) == ("127.0.0.1", 8080)

    def test_environment_values(self) -> None:
        """Each documented variable is read."""
        settings = Settings.from_env(
            {
                "BITBYBIT_DATA_DIR": "/srv/bitbybit",
                "BITBYBIT_TOLERANCE_SECONDS": "60",
                "BITBYBIT_MAX_BODY_BYTES": " 1024 ",
                "BITBYBIT_BODY_TIMEOUT_SECONDS": "5",
            }
        )
        assert settings.data_dir == Path("/srv/bitbybit")
        assert settings.tolerance_seconds == 60
        assert settings.max_body_bytes == 1024
        assert settings.body_timeout_seconds == 5

    def test_flags_win_over_environment(self) -> None:
        """--data-dir, --host and --port override the environment and the defaults."""
        settings = Settings.from_env(
            {"BITBYBIT_DATA_DIR": "/from/env"}, data_dir="/from/flag", host="192.0.2.7", port=9001
        )
        assert settings.data_dir == Path("/from/flag")
        assert (settings.host, settings.port) == ("192.0.2.7", 9001)

    @pytest.mark.parametrize(
        "name",
        [
            "BITBYBIT_TOLERANCE_SECONDS",
            "BITBYBIT_MAX_BODY_BYTES",
            "BITBYBIT_BODY_TIMEOUT_SECONDS",
        ],
    )
    @pytest.mark.parametrize("value", ["abc", "1.5", "0", "-5", "3e2"])
    def test_bad_integers_are_settings_errors(self, name: str, value: str) -> None:
        """A number setting that is not a positive whole number is refused, naming it."""
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})

    def test_paths(self, tmp_path: Path) -> None:
        """The log and the projections live side by side in the data directory."""
        settings = Settings(data_dir=tmp_path)
        assert settings.events_path == tmp_path / "events.db"
        assert settings.projections_path == tmp_path / "projections.db"


class TestServeCommand:
    """`python -m app serve` refuses unusable settings."""

    @pytest.mark.parametrize("environ", [{}, {"BITBYBIT_WEBHOOK_SECRET": ""}])
    def test_serve_without_secret_exits_2(
        self, environ: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`serve` with no secret exits 2 and tells the user to set BITBYBIT_WEBHOOK_SECRET."""
        code = cli.main(["serve", "--port", "0", "--data-dir", str(tmp_path)], environ=environ)
        assert code == 2
        err = capsys.readouterr().err
        assert "BITBYBIT_WEBHOOK_SECRET" in err
        assert not (tmp_path / "events.db").exists()

    def test_serve_with_bad_setting_exits_2(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A malformed number setting stops `serve` with exit code 2 and names the variable."""
        environ = {"BITBYBIT_WEBHOOK_SECRET": "s", "BITBYBIT_MAX_BODY_BYTES": "lots"}
        code = cli.main(["serve", "--data-dir", str(tmp_path)], environ=environ)
        assert code == 2
        assert "BITBYBIT_MAX_BODY_BYTES" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["status", "rebuild"])
def test_commands_refuse_a_data_dir_without_a_log(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`status` and `rebuild` on a directory with no log exit 2 and create nothing."""
    missing = tmp_path / "typo"
    assert cli.main([command, "--data-dir", str(missing)], environ={}) == 2
    assert "no event log" in capsys.readouterr().err
    assert not missing.exists()
