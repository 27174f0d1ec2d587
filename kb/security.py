"""Security-relevant helpers in one place: what leaves the app for other programs or browsers.

csv_cell: a spreadsheet runs a cell that starts with = + - @ (or a tab/CR before them) as a formula
(CSV injection, OWASP); readers' questions go into the owner's CSV export, so such cells get a leading
apostrophe, which spreadsheets show as text.
"""
from __future__ import annotations

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value):
    """The value as a CSV cell that no spreadsheet evaluates; numbers pass unchanged."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
