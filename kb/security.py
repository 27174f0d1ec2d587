"""Everything security-relevant in one place: link sanitising, file-path checks, request limits, security
headers and a rate limiter for admin attempts.

    clean_url("jav&#x61;script:alert(1)")      -> None   (the browser would decode it to javascript:)
    clean_url("https://example.org/a?b=1")     -> "https://example.org/a?b=1"
    uploaded_file(path, cache_folder)          -> Path inside the upload cache, or UnsafeInput
    bound_turns(turns, LIMITS)                 -> the last turns within the history budget
    frame_ancestors_from(env, site_url)        -> the CSP frame-ancestors list (kb/security_http.py sends it)
    RateLimiter(5, 60).check("127.0.0.1")      -> seconds to wait, or 0.0
    csv_cell("=1+1")                           -> "'=1+1" (no formula runs in the owner's CSV export)
    is_safe_slug, check_site_url, is_inside, is_loopback_host: names, the blog's address, paths, bind address

The URL check decodes the way a browser does before it compares schemes: HTML character references
(numeric and named, with or without the final semicolon, decoded until nothing changes, so a double
encoding cannot survive one browser pass), then every ASCII tab and newline removed anywhere and C0 control
characters and spaces stripped at both ends (WHATWG URL parsing), then all remaining whitespace and
control/format characters removed. Only http, https, scheme-less (relative) and fragment links survive.

csv_cell: a spreadsheet runs a cell that starts with = + - @ (or a tab/CR before them) as a formula
(CSV injection, OWASP); readers' questions go into the owner's CSV export, so such cells get a leading
apostrophe, which spreadsheets show as text.

This module knows strings, paths and ASGI; it imports neither gradio nor the engine.
"""
from __future__ import annotations

import html
import json
import math
import re
import threading
import time
import unicodedata
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kb.errors import KBError

ALLOWED_SCHEMES = ("http", "https")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_MAX_UNESCAPE_ROUNDS = 8


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class UnsafeInput(KBError):
    """A request the app refuses; the message is Chinese, shown to the client, and names no server path."""


# ---- URLs -----------------------------------------------------------------------------------------------
def _decoded(url: str) -> str | None:
    """`url` as a browser sees it after decoding character references; None when it never settles."""
    for _ in range(_MAX_UNESCAPE_ROUNDS):
        decoded = html.unescape(url)
        if decoded == url:
            return url
        url = decoded
    return None


def _without_invisible(url: str) -> str:
    """Drop whitespace and control/format characters (C0, DEL, C1, zero-width, bidi marks) anywhere."""
    return "".join(ch for ch in url if not (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf")))


def clean_url(url: str | None) -> str | None:
    """The link to keep (decoded, invisible characters removed), or None when it must be dropped.

    Kept: http(s) URLs, protocol-relative `//host/...`, relative paths and `#fragment`s. Dropped:
    every other scheme (javascript:, vbscript:, data:, file:, ...) however it is encoded or split.
    """
    if url is None:
        return None
    decoded = _decoded(str(url))
    if decoded is None:
        return None
    cleaned = _without_invisible(decoded)
    # Backslashes count as slashes for http(s) URLs in browsers; a scheme never contains one.
    match = _SCHEME.match(cleaned)
    if match and match.group(1).lower() not in ALLOWED_SCHEMES:
        return None
    if not match and ":" in cleaned.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]:
        return None   # "x y:..." or other oddities a browser may read as a scheme: not a plain relative link
    return cleaned


def is_safe_url(url: str | None) -> bool:
    return clean_url(url) is not None


def markdown_text(text: str) -> str:
    """`text` safe inside Markdown link text: HTML escaped and Markdown's link punctuation backslashed."""
    escaped = html.escape(text, quote=True)
    return re.sub(r"([\\\[\]()`*_<>!])", r"\\\1", escaped)


# ---- paths ----------------------------------------------------------------------------------------------
def uploaded_file(path: str | Path | None, cache_folder: str | Path) -> Path:
    """The path of a file the client really uploaded (it lies in the upload cache), else UnsafeInput.

    The message is the same whether the path exists or not, so it reveals nothing about the server.
    """
    refuse = UnsafeInput("只接受通过本页面上传的文件；请重新选择文件上传。")
    if not path or not isinstance(path, (str, Path)) or "\x00" in str(path):
        raise refuse
    p = Path(path)
    if not p.is_absolute() or not is_inside(p, cache_folder):
        raise refuse
    try:
        if not p.resolve().is_file():
            raise refuse
    except OSError:
        raise refuse from None
    return p.resolve()


# ---- request limits -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What one request may cost; everything beyond is cut (history) or refused (bodies, parameters)."""
    max_body_bytes: int = 2 * 1024 * 1024        # whole HTTP request body (uploads are ≤ 1 MB inside it)
    max_history_turns: int = 6                   # earlier (question, answer) pairs a follow-up may see
    max_history_chars: int = 4000                # their characters together, newest turns kept first
    max_history_json_chars: int = 64 * 1024      # the raw history_json an API client may send
    max_field_chars: int = 20_000                # any other text field (question, slug, run id, params)
    max_params_json_chars: int = 4096            # a demo's parameters as JSON
    demo_queue_max: int = 8                      # demo runs waiting at once (beyond the running ones)
    demo_per_client: int = 2                     # runs one client may have queued or running
    wait_max_s: float = 120.0                    # how long run_demo(wait=True) may hold a request
    ask_concurrency: int = 4                     # /ask requests answered at once
    ask_queue_max: int = 256                     # POST /api/ask requests waiting or running; beyond: 503
    max_sessions: int = 2000                     # browser sessions whose state is kept (~0.4 MiB each), oldest dropped


LIMITS = Limits()


def bound_turns(turns: Sequence[tuple[str, str]], limits: Limits = LIMITS) -> list[tuple[str, str]]:
    """The last `max_history_turns` turns whose text fits `max_history_chars` (newest first kept; a turn
    that does not fit is shortened, older ones are dropped). Cheap: looks at no more turns than it keeps."""
    kept: list[tuple[str, str]] = []
    budget = limits.max_history_chars
    for question, answer in reversed(list(turns[-limits.max_history_turns:])):
        if budget <= 0:
            break
        question = question[:budget]
        answer = answer[:max(budget - len(question), 0)]
        budget -= len(question) + len(answer)
        kept.append((question, answer))
    return kept[::-1]


def parse_history_json(text: str | None, limits: Limits = LIMITS) -> list[tuple[str, str]]:
    """`[[question, answer], ...]` from an API client, bounded; UnsafeInput with a Chinese message."""
    if text is None or text == "":
        return []
    if not isinstance(text, str):
        raise UnsafeInput("history_json 必须是字符串形式的 JSON 数组，例如 [[\"问题\", \"回答\"]]。")
    if len(text) > limits.max_history_json_chars:
        raise UnsafeInput(f"history_json 过长：{len(text)} 字符，上限 {limits.max_history_json_chars}。")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise UnsafeInput("history_json 不是合法的 JSON。") from None
    if not isinstance(data, list):
        raise UnsafeInput("history_json 必须是数组：[[\"问题\", \"回答\"], ...]。")
    turns = []
    for i, turn in enumerate(data[-limits.max_history_turns:]):
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(x, str) for x in turn)):
            raise UnsafeInput(f"history_json 的第 {i + 1} 项必须是 [问题, 回答] 两个字符串。")
        turns.append((turn[0], turn[1]))
    return bound_turns(turns, limits)


def text_field(value, name: str, limits: Limits = LIMITS, required: bool = False) -> str:
    """A text parameter of an API call: a str within `max_field_chars`, else UnsafeInput."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise UnsafeInput(f"参数 {name} 必须是文本。")
    if "\x00" in value:
        raise UnsafeInput(f"参数 {name} 含有 NUL 字符。")
    if len(value) > limits.max_field_chars:
        raise UnsafeInput(f"参数 {name} 过长：{len(value)} 字符，上限 {limits.max_field_chars}。")
    if required and not value.strip():
        raise UnsafeInput(f"参数 {name} 不能为空。")
    return value


def params_object(text, limits: Limits = LIMITS) -> dict:
    """A demo's `params_json`: a JSON object of finite numbers, booleans and short strings."""
    text = text_field(text if text is not None else "{}", "params_json", limits) or "{}"
    if len(text) > limits.max_params_json_chars:
        raise UnsafeInput(f"params_json 过长：{len(text)} 字符，上限 {limits.max_params_json_chars}。")
    try:
        params = json.loads(text, parse_constant=_no_constant)
    except UnsafeInput:
        raise
    except (ValueError, RecursionError):
        raise UnsafeInput("params_json 不是合法的 JSON。") from None
    if not isinstance(params, dict):
        raise UnsafeInput("params_json 必须是 JSON 对象，例如 {\"n\": 3}。")
    for key, value in params.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UnsafeInput(f"参数 {key} 必须是有限的数。")
        if not isinstance(value, (str, int, float, bool)):
            raise UnsafeInput(f"参数 {key} 必须是数、布尔值或文本。")
    return params


def _no_constant(name: str):
    raise UnsafeInput(f"params_json 不能包含 {name}：参数必须是有限的数。")


# ---- rate limiting --------------------------------------------------------------------------------------
class RateLimiter:
    """At most `attempts` per `window_s` seconds per key (a client address): a sliding window.

    `check(key)` records an attempt and returns 0.0 when it is allowed, else the seconds until the next one
    would be. Thread-safe; keys with no recent attempts are forgotten, so memory stays bounded by traffic.
    """

    def __init__(self, attempts: int = 5, window_s: float = 60.0, clock=time.monotonic):
        self.attempts, self.window_s, self.clock = attempts, window_s, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, key: str) -> float:
        """Seconds until `key` may try again (0.0: it may now), without recording an attempt."""
        now = self.clock()
        with self._lock:
            times = self._seen.get(key)
            if not times:
                return 0.0
            while times and times[0] <= now - self.window_s:
                times.popleft()
            return times[0] + self.window_s - now if len(times) >= self.attempts else 0.0

    def check(self, key: str) -> float:
        now = self.clock()
        with self._lock:
            if len(self._seen) > 10_000:   # forget clients that went quiet
                for k in [k for k, q in self._seen.items() if not q or q[-1] <= now - self.window_s]:
                    del self._seen[k]
            times = self._seen.setdefault(key, deque())
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) >= self.attempts:
                return times[0] + self.window_s - now
            times.append(now)
            return 0.0


# ---- who may frame the app ------------------------------------------------------------------------------
def frame_ancestors_from(value: str | None, site_url: str | None = None) -> str:
    """The CSP frame-ancestors source list: 'self', the blog's origin (KB_SITE_URL, whose pages frame the
    chat through the widget) and KB_FRAME_ANCESTORS ("https://blog.example.org https://*.example.org").

    Anything but http(s) origins, 'self' and 'none' in KB_FRAME_ANCESTORS is a ValueError at start-up."""
    from urllib.parse import urlsplit

    sources = ["'self'"]
    if site_url:
        parts = urlsplit(site_url)
        sources.append(f"{parts.scheme}://{parts.netloc}")
    for s in (value or "").split():
        if s in ("'self'", "self"):
            continue
        if s in ("'none'", "none"):
            return "'none'"
        if not re.fullmatch(r"https?://(\*\.)?[A-Za-z0-9.\-]+(:\d{1,5})?", s):
            raise ValueError(f"KB_FRAME_ANCESTORS: {s!r} is not an http(s) origin, 'self' or 'none'")
        sources.append(s)
    return " ".join(dict.fromkeys(sources))


# ---- CSV export -----------------------------------------------------------------------------------------
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
