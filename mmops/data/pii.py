"""PII scrubbing for free text: e-mail addresses and phone numbers become placeholder tokens.

A pure function with no configuration state, so training (the feature extractor) and serving
call the very same code and a model never sees, nor learns from, a raw address or number.

    >>> scrub_pii("mail jane.doe@example.org or call +44 20 7946 0958")
    'mail [EMAIL] or call [PHONE]'

What counts as a phone number is deliberately conservative, so that numbers that carry meaning
for a classifier (counts, years, digits, "3 5 7") survive: 7 to 15 digits, and either a leading
`+`, an area code in parentheses, three or more digit groups, groups joined by `-` or `.`, or
one unbroken run of 10 to 15 digits.
"""

from __future__ import annotations

import re
from typing import Iterable

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"

# local@domain.tld; the local part allows the usual RFC 5322 "atext" characters and dots,
# the domain needs at least one dot and a 2+ letter top-level label.
_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)

# A candidate: optional +country code, optional (area), then digit groups separated by at most
# one of space, dash or dot. Acceptance is decided in _phone_or_keep.
_PHONE = re.compile(
    r"(?<![\w+])"
    r"(?P<plus>\+\d{1,3}[ .-]?)?"
    r"(?P<paren>\(\d{1,5}\)[ .-]?)?"
    r"\d{1,15}(?:[ .-]\d{1,15}){0,6}"
    r"(?![\w])"
)
_MIN_DIGITS, _MAX_DIGITS = 7, 15
# Look-alikes that are not phone numbers: dates (2024-01-15, 15.01.2024) and dotted IPv4.
_NOT_PHONE = re.compile(r"\d{4}[-.]\d{1,2}[-.]\d{1,2}|\d{1,2}[-.]\d{1,2}[-.]\d{4}|\d{1,3}(?:\.\d{1,3}){3}")


def _looks_like_phone(candidate: str, plus: bool, paren: bool) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if not _MIN_DIGITS <= digits <= _MAX_DIGITS:
        return False
    if plus or paren:
        return True
    if _NOT_PHONE.fullmatch(candidate):
        return False
    groups = re.split(r"[ .-]", candidate)
    if len(groups) == 1:
        return digits >= 10  # one unbroken run: 10+ digits (a 7-digit run is more likely an id)
    if len(groups) >= 3:
        return all(len(g) >= 2 for g in groups[1:])  # "555 123 4567", not "1 2 3 4 5 6 7"
    return any(sep in candidate for sep in "-.")  # "555-1234" but not "2024 2025"


def _phone_or_keep(match: re.Match) -> str:
    text = match.group(0)
    stripped = text.rstrip(" .-")
    if _looks_like_phone(stripped, bool(match.group("plus")), bool(match.group("paren"))):
        return PHONE_TOKEN + text[len(stripped):]
    return text


def scrub_pii(text: str, *, email_token: str = EMAIL_TOKEN, phone_token: str = PHONE_TOKEN) -> str:
    """Replace e-mail addresses and phone numbers in `text` with placeholder tokens.

    Idempotent (scrubbing scrubbed text changes nothing) and total: any str in, a str out;
    `None` and non-strings are returned unchanged so callers can pass raw table cells.
    """
    if not isinstance(text, str) or not text:
        return text
    out = _EMAIL.sub(email_token, text)
    if phone_token == PHONE_TOKEN:
        return _PHONE.sub(_phone_or_keep, out)

    def custom(match: re.Match) -> str:
        kept = _phone_or_keep(match)
        return kept.replace(PHONE_TOKEN, phone_token, 1) if kept != match.group(0) else kept

    return _PHONE.sub(custom, out)


def scrub_texts(texts: Iterable[str]) -> list[str]:
    """`scrub_pii` over a column of texts (the form the feature extractor needs)."""
    return [scrub_pii(t) for t in texts]
