import pytest

from mmops.features.privacy import EMAIL_TOKEN, PHONE_TOKEN, scrub_pii, scrub_texts


@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to jane.doe@example.org today", "write to [EMAIL] today"),
        ("A.B+tag@mail.sub.example.co.uk!", "[EMAIL]!"),
        ("two: a@x.io, b_c@y-z.com.", "two: [EMAIL], [EMAIL]."),
        ("call +44 20 7946 0958 now", "call [PHONE] now"),
        ("(555) 123-4567", "[PHONE]"),
        ("tel +1 (555) 123-4567, ext", "tel [PHONE], ext"),
        ("555-123-4567 or 555.123.4567", "[PHONE] or [PHONE]"),
        ("ring 555-1234.", "ring [PHONE]."),
        ("5551234567", "[PHONE]"),
        ("mail me@example.com or +33 1 23 45 67 89", "mail [EMAIL] or [PHONE]"),
    ],
)
def test_scrubs_emails_and_phones(text, expected):
    assert scrub_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "it is an even number greater than 5",
        "1 2 3 4 5 6 7 8 9",  # digits spelled out one by one
        "between 2024 2025",  # years
        "on 2024-01-15 or 15.01.2024",  # dates
        "host 192.168.10.20",  # an IPv4 address is not a phone number
        "pi 3.14159 e 2.71828",
        "order 1234567",  # a 7-digit id with no phone-like shape
        "user@localhost and x@y",  # no top-level domain
        "price 1,234,567",
        "",
    ],
)
def test_keeps_text_that_is_not_pii(text):
    assert scrub_pii(text) == text


def test_idempotent_custom_tokens_and_non_strings():
    once = scrub_pii("a@b.org +1 555 123 4567")
    assert scrub_pii(once) == once == f"{EMAIL_TOKEN} {PHONE_TOKEN}"
    assert scrub_pii("a@b.org 555-123-4567", email_token="<e>", phone_token="<p>") == "<e> <p>"
    assert scrub_pii(None) is None
    assert scrub_pii(float("nan")) != scrub_pii(float("nan"))  # passed through untouched (NaN)
    assert scrub_texts(["x@y.com", "no pii", ""]) == [EMAIL_TOKEN, "no pii", ""]


def test_long_input_is_fast():
    import time

    text = ("9" * 5000 + " ") * 20 + "a@b.co " + "1-" * 5000
    start = time.perf_counter()
    out = scrub_pii(text)
    assert time.perf_counter() - start < 1.0
    assert EMAIL_TOKEN in out
