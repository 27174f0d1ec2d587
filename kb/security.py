"""Security-relevant helpers in one place: what leaves the app for other programs or browsers, names.

csv_cell: a spreadsheet runs a cell that starts with = + - @ (or a tab/CR before them) as a formula
(CSV injection, OWASP); readers' questions go into the owner's CSV export, so such cells get a leading
apostrophe, which spreadsheets show as text.
"""
from __future__ import annotations

import re

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """The value as a CSV cell that no spreadsheet evaluates; numbers pass unchanged."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


_SLUG = re.compile(r"[^\W_][\w.-]{0,199}")        # letters (any script), digits, '-', '_', '.'; no '/', no space


def is_safe_slug(slug: str) -> bool:
    """Whether a blog post's slug can name it in URLs and lists: one path segment, no '..', no control chars.

    Blog slugs come from file names (Hexo's `:title` keeps Chinese names), so any script's letters pass;
    this project's own articles are stricter (`[a-z0-9-]+`, kb/articles.py).
    """
    return bool(isinstance(slug, str) and _SLUG.fullmatch(slug) and ".." not in slug)


def check_site_url(url: str) -> str:
    """The blog's address (KB_SITE_URL) without a trailing '/', or KBError: only http(s) with a host.

    Citation links are built from it; a `javascript:` or relative value would put script or a wrong
    target into every answer.
    """
    from urllib.parse import urlsplit
    from kb.errors import KBError
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment \
            or any(ch in url for ch in "\"'<> \t\n\\"):
        raise KBError(f"KB_SITE_URL must be an http(s) address such as https://blog.example.com, not {url!r}")
    return url.strip().rstrip("/")


def is_inside(path, folder) -> bool:
    """Whether `path` (symbolic links resolved) lies inside `folder`: a file operation may touch it."""
    from pathlib import Path
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError):
        return False


def is_loopback_host(host: str) -> bool:
    """Whether binding `host` keeps the server to this machine (127.0.0.0/8, ::1, localhost)."""
    import ipaddress
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False             # a name other than localhost may resolve anywhere: treat it as public
