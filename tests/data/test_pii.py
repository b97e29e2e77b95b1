import time
from collections import Counter

import pytest

from datagen.hostile import PII_ADVERSARIAL
from mmops.data.pii import EMAIL_TOKEN, PHONE_TOKEN, TOKENS, find_pii, scrub_pii, scrub_texts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to jane.doe@example.org today", "write to [EMAIL] today"),
        ("A.B+tag@mail.sub.example.co.uk!", "[EMAIL]!"),
        ("two: a@x.io, b_c@y-z.com.", "two: [EMAIL], [EMAIL]."),
        ("see x@example.com.123", "see [EMAIL].123"),  # the longest domain that ends in a TLD
        ("<" + "a" * 70 + "@x.com>", "<aaaaaa[EMAIL]>"),  # the local part is at most 64 characters
        ("a@b.com@c.org", "[EMAIL]@c.org"),  # an address does not take the previous one's domain
        ("call +44 20 7946 0958 now", "call [PHONE] now"),
        ("(555) 123-4567", "[PHONE]"),
        ("tel +1 (555) 123-4567, ext", "tel [PHONE], ext"),
        ("555-123-4567 or 555.123.4567", "[PHONE] or [PHONE]"),
        ("ring 555-1234.", "ring [PHONE]."),
        ("5551234567", "[PHONE]"),
        ("mail me@example.com or +33 1 23 45 67 89", "mail [EMAIL] or [PHONE]"),
        ("card 4111 1111 1111 1111.", "card [CARD]."),
        ("4111-1111-1111-1111", "[CARD]"),
        ("amex 378282246310005 or 3782 822463 10005", "amex [CARD] or [CARD]"),
        ("mc 5555555555554444", "mc [CARD]"),
        ("+1 555 123 4567 4111111111111111", "[PHONE] [CARD]"),  # found once the phone is a token
        ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [IBAN] please"),
        ("DE89370400440532013000, NL91ABNA0417164300", "[IBAN], [IBAN]"),
        ("FR14 2004 1010 0505 0001 3M02 606 OK", "[IBAN] OK"),  # the country's length ends it
        ("host 192.168.10.20", "host [IP]"),
        ("from 10.0.0.1:8080.", "from [IP]:8080."),
        ("v6 2001:db8:85a3::8a2e:370:7334 and [fe80::1]:443", "v6 [IP] and [[IP]]:443"),
        ("mapped ::ffff:192.0.2.1", "mapped [IP]"),
    ],
)
def test_scrubs_each_kind(text, expected):
    assert scrub_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "it is an even number greater than 5",
        "1 2 3 4 5 6 7 8 9",  # digits spelled out one by one
        "between 2024 2025",  # years
        "on 2024-01-15 or 15.01.2024",  # dates
        "pi 3.14159 e 2.71828",
        "order 1234567",  # a 7-digit id with no phone-like shape
        "user@localhost and x@y",  # no top-level domain
        "price 1,234,567",
        "card 4111 1111 1111 1112",  # fails Luhn
        "id 1234567890123456789012",  # 22 digits: neither a card nor a phone
        "GB83WEST12345698765432",  # wrong check digits
        "ZZ82WEST12345698765432",  # no such country
        "GB82WEST12345698765432XY",  # runs on past the registered length
        "256.1.1.1 and 01.02.03.04 and 1.2.3.4.5",  # not dotted quads
        "at 12:30:45, std::vector, a :: b, ::1",  # times, code, the loopback
        "ISBN 978-3-16-148410-0",
        "",
    ],
)
def test_keeps_text_that_is_not_pii(text):
    assert scrub_pii(text) == text
    assert find_pii(text) == Counter()


def test_find_pii_counts_kinds_without_the_values():
    text = ("a@b.org and c@d.io; 4111 1111 1111 1111; GB82 WEST 1234 5698 7654 32; 10.1.2.3, "
            "2001:db8::1; +1 555 123 4567")
    found = find_pii(text)
    assert found == Counter(email=2, card=1, iban=1, ip=2, phone=1)
    assert sum(found.values()) == scrub_pii(text).count("[")  # exactly what scrub_pii replaces
    assert find_pii(None) == find_pii(3.5) == Counter()


def test_idempotent_custom_tokens_and_non_strings():
    text = "a@b.org +1 555 123 4567 4111111111111111 GB82WEST12345698765432 10.0.0.1 fe80::1"
    once = scrub_pii(text)
    assert scrub_pii(once) == once == " ".join(TOKENS[k] for k in ("email", "phone", "card", "iban", "ip", "ip"))
    assert find_pii(once) == Counter()
    assert scrub_pii("a@b.org 555-123-4567", tokens={"email": "<e>", "phone": "<p>"}) == "<e> <p>"
    with pytest.raises(ValueError, match="unknown PII kind.*'name'"):
        scrub_pii("x", tokens={"name": "<n>"})
    assert scrub_pii(None) is None
    assert scrub_pii(float("nan")) != scrub_pii(float("nan"))  # passed through untouched (NaN)
    assert scrub_texts(["x@y.com", "no pii", ""]) == [EMAIL_TOKEN, "no pii", ""]
    assert PHONE_TOKEN in scrub_texts(["+44 20 7946 0958"])[0]


FRAGMENTS = ["a@b.org", "x.y+z@mail.example.co.uk", "+44 20 7946 0958", "555-123-4567", "+1 (55) 12-34", "4111 1111 1111 1111",
             "4111111111111111", "GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "10.0.0.1", "fe80::1",
             "2001:db8::8a2e:370:7334", "1234", "2024", "12", "7", "x", "@", ":", "::", ".", "-", "+", "(", ")"]


def test_idempotent_and_clean_on_random_mixtures(monkeypatch):
    import random
    import re

    from mmops.data import pii as privacy

    rng = random.Random(13)
    plain = [f for f in FRAGMENTS if not set(f) & set("@:")]  # texts the quick gate may turn away
    texts = ["".join(rng.choice(pool) + rng.choice(["", " ", " ", ", ", ".", "-", "x", sep]) for _ in range(8))
             for pool, sep in [(FRAGMENTS, ":"), (plain, " ")] * 1000]
    scrubbed = [scrub_pii(t) for t in texts]
    for text, once in zip(texts, scrubbed):
        assert scrub_pii(once) == once, text
        assert find_pii(once) == Counter(), text
    monkeypatch.setattr(privacy, "_MAY_HOLD_PII", re.compile(""))  # the quick gate only skips work
    assert [scrub_pii(t) for t in texts] == scrubbed


# each family is followed by a tail that switches every pass on (see the linear-time test)
ADVERSARIAL = PII_ADVERSARIAL


def _cpu_seconds(text: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()  # CPU time: other processes on the machine do not count
        scrub_pii(text)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_time_grows_linearly_on_adversarial_input(name):
    small, factor = 25_000, 16
    text = ADVERSARIAL[name](small) + " 1@a:"
    base = _cpu_seconds(text, repeats=5)
    assert base < 1.0, f"{name}: {base:.2f} s for {len(text)} chars"  # a quadratic scanner stops here
    big = _cpu_seconds(ADVERSARIAL[name](small * factor) + " 1@a:", repeats=2)
    # linear: ~16x (more when the small input fits a cache the big one does not); quadratic: ~256x
    assert big < 64 * max(base, 1e-3), f"{name}: {base * 1e3:.1f} ms -> {big * 1e3:.1f} ms for {factor}x the input"
