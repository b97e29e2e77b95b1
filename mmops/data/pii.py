"""PII in free text: find it (`find_pii`) and replace it with placeholder tokens (`scrub_pii`).

A pure function with no configuration state, so training (the feature extractor) and serving
call the very same code and a model never sees, nor learns from, a raw address or number.

    >>> scrub_pii("mail jane.doe@example.org or call +44 20 7946 0958")
    'mail [EMAIL] or call [PHONE]'
    >>> dict(find_pii("card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, from 203.0.113.7"))
    {'iban': 1, 'card': 1, 'ip': 1}

What is found, each kind by its own pass, in this order (a placeholder never looks like PII, so a
later pass cannot re-match an earlier one's output; the passes run again while a round finds
something, at most 4 rounds, which makes scrubbing idempotent):

- ``[EMAIL]`` ``local@domain.tld``: the local part is the RFC 5322 atext run before the '@' (its
  last 64 characters), the domain up to 253 characters of LDH labels ending in a 2+ letter TLD.
- ``[IBAN]`` two upper-case letters, two check digits, the BBAN, optionally in groups of four
  separated by spaces; the length must be the one its country registers and mod-97 must hold.
- ``[CARD]`` 13 to 19 digits starting 2-6 (the Visa, Mastercard, Amex, Discover, JCB, Diners,
  UnionPay ranges), unbroken or grouped 4-4-4-4(-3) / 4-6-5 / 4-6-4 by spaces or dashes, passing
  the Luhn check and not part of a longer run of digit groups.
- ``[IP]`` IPv6 (validated by `ipaddress`; the bare ``::`` and ``::N`` forms, which occur in prose
  and code, are left alone) and dotted-quad IPv4 (each octet 0-255, no leading zeros).
- ``[PHONE]`` deliberately conservative, so that numbers that carry meaning for a classifier
  (counts, years, digits, "3 5 7") survive: 7 to 15 digits, and either a leading `+`, an area code
  in parentheses, three or more digit groups, groups joined by `-` or `.`, or one unbroken run of
  10 to 15 digits; dates are not phones.

Linear time, whatever the input. Each pass finds candidates with a pattern that starts with one
fixed character class (so the regex engine skips ahead in C) followed only by bounded or
possessive quantifiers, and a look-behind on the character before it so that a candidate starts
only where a run of such characters starts; e-mails are found from each '@' (at most 64
characters back, 253 forward) and IPv6 addresses from each ':'. Every character is thus examined
a bounded number of times per pass (tests/features/test_privacy.py compares the times for 8x
longer adversarial inputs; bench/bench_pii.py prints the throughput).

Not covered (say so wherever the scrubber is relied on): personal names, postal addresses,
dates of birth, national and free-form identifiers (passport, tax, social-security, customer or
account numbers that fail the checks above; a US SSN written 123-45-6789 happens to be caught as
a phone), MAC addresses and device ids, user names in URLs or handles, e-mail addresses with
non-ASCII characters or obfuscated ("jane at example dot org"), numbers spelled out in words, and
anything in images or audio. A detector of this kind has false positives too: a Luhn-valid 16-digit
order number becomes ``[CARD]``, a four-part version number ``[IP]``.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"
CARD_TOKEN = "[CARD]"
IBAN_TOKEN = "[IBAN]"
IP_TOKEN = "[IP]"
TOKENS: dict[str, str] = {"email": EMAIL_TOKEN, "iban": IBAN_TOKEN, "card": CARD_TOKEN, "ip": IP_TOKEN,
                          "phone": PHONE_TOKEN}
KINDS: tuple[str, ...] = tuple(TOKENS)  # the order of the passes

Span = tuple[int, int]

# --------------------------------------------------------------------------- e-mail

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~.-"  # RFC 5322 atext, plus the dot of dot-atom
_AT = re.compile(r"@(?=[A-Za-z0-9-]{1,63}+\.)")  # an '@' whose domain has a first label and a dot
_LOCAL_REVERSED = re.compile(rf"[{_ATEXT}]*+")
# the longest run of labels ending in a TLD: in "x@example.com.123" the address is x@example.com
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")
_MAX_LOCAL, _MAX_DOMAIN = 64, 253


def _emails(text: str) -> Iterator[Span]:
    last = 0
    for at in _AT.finditer(text):
        i = at.start()
        window = text[max(last, i - _MAX_LOCAL) : i]
        start = i - _LOCAL_REVERSED.match(window[::-1]).end()
        while start < i and text[start] == ".":
            start += 1
        domain = _DOMAIN.match(text, i + 1, i + 1 + _MAX_DOMAIN)
        if start < i and domain:
            last = domain.end()
            yield start, last


# --------------------------------------------------------------------------- IBAN

# Lengths by country, from the SWIFT IBAN registry.
_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?+[A-Z0-9]){11,30}+")


def _iban(m: re.Match) -> Span | None:
    text = m.group(0)
    want = _IBAN_LENGTH.get(text[:2])
    compact = text.replace(" ", "")
    if want is None or len(compact) < want:
        return None
    end, seen = 0, 0
    while seen < want:  # just past the want-th alphanumeric character
        seen += text[end] != " "
        end += 1
    after = m.string[m.start() + end : m.start() + end + 1]
    if after.isascii() and after.isalnum():  # it would end inside a word
        return None
    code = compact[4:want] + compact[:4]
    number = int("".join(str(int(c, 36)) for c in code))
    return (m.start(), m.start() + end) if number % 97 == 1 else None


# --------------------------------------------------------------------------- payment card

_CARD = re.compile(
    r"[2-6](?<![\w.,+-][2-6])(?<!\d[ -][2-6])"  # not inside a number or a run of digit groups
    r"(?:\d{12,18}|\d{3}([ -])\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{3}([ -])\d{6}\2\d{4,5})"
    r"(?!\w|[ -]\d)"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        total += (d * 2 - 9 if d > 4 else d * 2) if i % 2 else d
    return total % 10 == 0


def _card(m: re.Match) -> Span | None:
    return m.span() if _luhn(m.group(0).replace(" ", "").replace("-", "")) else None


# --------------------------------------------------------------------------- IP address

_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}+\.\d{1,3}+\.\d{1,3}+\.\d{1,3}+(?!\w|\.\d)")


def _ipv4(m: re.Match) -> Span | None:
    octets = m.group(0).split(".")
    return m.span() if all(o == "0" or (o[0] != "0" and int(o) < 256) for o in octets) else None


_HEX = "[0-9A-Fa-f]"
_COLON = re.compile(":")
_IPV6 = re.compile(
    rf"(?<![\w:.])(?=:{{0,2}}{_HEX}{{1,4}}:{{1,2}}{_HEX})"  # two groups at least: not "::" nor "::1"
    rf"(?:{_HEX}{{0,4}}+:){{2,7}}+(?:(?:\d{{1,3}}\.){{3}}\d{{1,3}}|{_HEX}{{1,4}}+)?+(?![\w:]|\.\w)"
)
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")


def _ipv6s(text: str) -> Iterator[Span]:
    last = 0
    for colon in _COLON.finditer(text):
        start = colon.start()
        if start < last:
            continue
        while start > colon.start() - 4 and start > 0 and text[start - 1] in _HEX_CHARS:
            start -= 1  # back to where the address would begin
        m = _IPV6.match(text, start)
        if m is None:
            continue
        last = m.end()
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        yield m.span()


# --------------------------------------------------------------------------- phone

# A candidate: optional +country code, optional (area), then digit groups separated by at most
# one of space, dash or dot. Acceptance is decided in _phone.
_PHONE = re.compile(
    r"[+(\d](?<![\w+][+(\d])"
    r"(?=(?:[ .()+-]{0,2}\d){6})"  # cheap necessary condition: 7 digits (most rejects stay in C)
    r"(?:(?<=\+)\d{1,3}[ .-]?(?:\(\d{1,5}\)[ .-]?)?\d|(?<=\()\d{1,5}\)[ .-]?\d|(?<=\d))"
    r"\d{0,14}+(?:[ .-]\d{1,15}+){0,6}"
    r"(?!\w)"
)
_MIN_DIGITS, _MAX_DIGITS = 7, 15
# Look-alikes that are not phone numbers: dates (2024-01-15, 15.01.2024) and dotted quads.
_NOT_PHONE = re.compile(r"\d{4}[-.]\d{1,2}[-.]\d{1,2}|\d{1,2}[-.]\d{1,2}[-.]\d{4}|\d{1,3}(?:\.\d{1,3}){3}")
_SEPARATOR = re.compile(r"[ .-]")


def _looks_like_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if not _MIN_DIGITS <= digits <= _MAX_DIGITS:
        return False
    if candidate[0] in "+(":  # a country code or an area code in parentheses
        return True
    if _NOT_PHONE.fullmatch(candidate):
        return False
    groups = _SEPARATOR.split(candidate)
    if len(groups) == 1:
        return digits >= 10  # one unbroken run: 10+ digits (a 7-digit run is more likely an id)
    if len(groups) >= 3:
        return all(len(g) >= 2 for g in groups[1:])  # "555 123 4567", not "1 2 3 4 5 6 7"
    return any(sep in candidate for sep in "-.")  # "555-1234" but not "2024 2025"


def _phone(m: re.Match) -> Span | None:
    return m.span() if _looks_like_phone(m.group(0)) else None


# --------------------------------------------------------------------------- passes


def _matches(pattern: re.Pattern, accept: Callable[[re.Match], Span | None]) -> Callable[[str], Iterator[Span]]:
    """The spans of `pattern`'s matches that `accept` keeps (it may narrow them)."""
    return lambda text: (span for m in pattern.finditer(text) if (span := accept(m)))


_DIGIT = re.compile(r"\d")
# What every kind needs, whatever the pass finds: '@'; ':'; a country code and check digits; a
# digit, a dot, a digit; or 7 digits with at most two of " .()+-" between neighbours (phones, cards).
_MAY_HOLD_PII = re.compile(r"[@:]|[A-Z]{2}\d\d|\d\.\d|\d(?:[ .()+-]{0,2}+\d){6}")
_ROUNDS = 4
# (kind, what the text must contain for the pass to find anything, the pass)
_PASSES: tuple[tuple[str, str, Callable[[str], Iterator[Span]]], ...] = (
    ("email", "@", _emails),
    ("iban", "digit", _matches(_IBAN, _iban)),
    ("card", "digit", _matches(_CARD, _card)),
    ("ip", ":", _ipv6s),  # before IPv4, which would take the tail of ::ffff:192.0.2.1
    ("ip", "digit", _matches(_IPV4, _ipv4)),
    ("phone", "digit", _matches(_PHONE, _phone)),
)


def _scrub(text: str, tokens: Mapping[str, str]) -> tuple[str, Counter[str]]:
    """`text` with each PII span replaced by its kind's token, and the count of spans per kind.

    Repeated while a round finds something (at most _ROUNDS): a later pass can uncover what an
    earlier one declined, e.g. a card number that followed a phone number is no longer part of a
    run of digit groups once the phone is a token. Hence idempotent.
    """
    found: Counter[str] = Counter()
    if not _MAY_HOLD_PII.search(text):
        return text, found
    for _ in range(_ROUNDS):
        text, new = _scrub_once(text, tokens)
        if not new:
            break
        found += new
    return text, found


def _scrub_once(text: str, tokens: Mapping[str, str]) -> tuple[str, Counter[str]]:
    found: Counter[str] = Counter()
    present = {"@": "@" in text, ":": ":" in text, "digit": _DIGIT.search(text) is not None}
    for kind, needs, spans_of in _PASSES:
        if not present[needs]:
            continue
        spans = list(spans_of(text))
        if spans:
            found[kind] += len(spans)
            parts, last = [], 0
            for start, end in spans:
                parts += [text[last:start], tokens[kind]]
                last = end
            text = "".join(parts) + text[last:]
    return text, found


def find_pii(text: object) -> Counter[str]:
    """How many spans of each kind (email, iban, card, ip, phone) `scrub_pii` would replace.

    Never returns the PII itself, so a report built from it cannot leak what it counts.
    Non-strings hold none.
    """
    return _scrub(text, TOKENS)[1] if isinstance(text, str) else Counter()


def scrub_pii(text: str, *, tokens: Mapping[str, str] | None = None) -> str:
    """Replace e-mail addresses, IBANs, card numbers, IP addresses and phone numbers with tokens.

    `tokens` overrides placeholders by kind (e.g. {"email": "<e>"}); a placeholder must not
    itself look like PII. Idempotent (scrubbing scrubbed text changes nothing) and total: any
    str in, a str out; `None` and non-strings are returned unchanged so callers can pass raw
    table cells.
    """
    if not isinstance(text, str) or not text:
        return text
    unknown = set(tokens or {}) - set(TOKENS)
    if unknown:
        raise ValueError(f"unknown PII kind(s) {sorted(unknown)}; known: {list(TOKENS)}")
    return _scrub(text, {**TOKENS, **(tokens or {})})[0]


def scrub_texts(texts: Iterable[str]) -> list[str]:
    """`scrub_pii` over a column of texts (the form the feature extractor needs)."""
    return [scrub_pii(t) for t in texts]
