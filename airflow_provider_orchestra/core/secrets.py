"""Keeping passwords out of messages and logs.

A database URL (ledger, checkpoints, a Postgres connection) and anything a user typed
where a connection id belongs may carry a password. Every message, log line or
descriptor that names one goes through here first.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"

# ``scheme://user:password@`` anywhere in a text; the password ends at the last "@"
# before the host (a password may itself hold "@" or ":").
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@'\"]*):(?P<password>[^\s/'\"]*)@")
_PASSWORD_PARAM = re.compile(r"(?P<head>\bpassword=)(?P<password>[^&\s'\"]*)", re.IGNORECASE)


def url_passwords(url: str) -> list[str]:
    """Passwords in a URL: its userinfo and any ``password=`` query parameter, raw and
    decoded, longest first."""
    parts = urlsplit(url)
    found = []
    userinfo = parts.netloc.rpartition("@")[0]
    if ":" in userinfo:
        found.append(userinfo.partition(":")[2])
    found += [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def scrub(message: str, url: str) -> str:
    """``message`` with every password of ``url`` masked (a driver's error may quote it)."""
    for secret in url_passwords(url):
        message = message.replace(secret, MASK)
    return message


def redact_url(url: str) -> str:
    """The URL with every password replaced by ``***`` (also when the URL is malformed)."""
    parts = urlsplit(url)
    userinfo, at, hostinfo = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{MASK}@{hostinfo}"
    query = "&".join(
        f"{key}={MASK}" if key.lower() == "password" else f"{key}={value}"
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
    )
    return scrub(parts._replace(netloc=netloc, query=query).geturl(), url)


def redact_text(text: str) -> str:
    """Free text (a connection id, an error) with the password of every URL in it masked."""
    text = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _PASSWORD_PARAM.sub(lambda m: f"{m['head']}{MASK}", text)
