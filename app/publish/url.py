"""The PostgreSQL URL, a secret: what of it may be shown, and error texts without it.

The URL is never logged, and error texts are redacted before they are logged or
recorded (libpq quotes a malformed connection string whole, password included);
`describe_target` names host, port and database only.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict


class PublishURLError(ValueError):
    """The connection URL cannot be read; the message never quotes it."""


def conninfo(url: str) -> dict[str, Any]:
    """The URL's parts, as libpq reads them; an unreadable URL is an error not quoting it."""
    try:
        return conninfo_to_dict(url)
    except psycopg.Error:
        # libpq's message quotes the text it could not read, which may be the password.
        raise PublishURLError("the publish URL is not a PostgreSQL connection URL") from None


def describe_target(url: str) -> str:
    """`host:port/database` of the URL, for logs and `status`: never the user or password."""
    info = conninfo(url)
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    port = str(info.get("port") or "5432")
    database = str(info.get("dbname") or info.get("user") or "")
    return f"{host}:{port}/{database}"


def redact(text: str, url: str) -> str:
    """`text` without the URL or its password, in any spelling libpq might quote."""
    secrets = {url}
    with contextlib.suppress(PublishURLError):
        password = conninfo(url).get("password")
        if password:
            secrets.update({str(password), urllib.parse.quote(str(password), safe="")})
    with contextlib.suppress(ValueError):
        parsed = urllib.parse.urlsplit(url)
        if parsed.password:
            secrets.add(parsed.password)
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def describe_error(error: BaseException, url: str) -> str:
    """One line naming the error, safe to log and to show in `status`."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return redact(f"{type(error).__name__}: {first}" if first else type(error).__name__, url)
