"""Personal data out of what customers and agents wrote, before it becomes a training example or
an export.

Found and replaced by a placeholder: e-mail addresses (``[email]``), IBANs (checked with
python-stdnum, ``[iban]``), card numbers (13-19 digits that pass the Luhn check, ``[card]``),
phone numbers (Google's libphonenumber through ``phonenumbers``: international ones always,
national ones in LEARNING_PHONE_REGION's format, ``[phone]``), and whatever
LEARNING_REDACT_PATTERN matches (a regular expression, e.g. the business's order numbers,
``[redacted]``). What the business itself publishes (``keep``: the articles a reply was written
from, the profile's contact) is left as it is: a correction that gives the shop's own phone
number teaches the right thing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

import phonenumbers
from django.conf import settings
from stdnum import iban, luhn

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b", re.I)
CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")


def redact(text: str, keep: Iterable[str] = ()) -> str:
    """``text`` with personal data replaced (module docstring); a match that occurs in one of
    ``keep`` stays."""
    if not text:
        return text
    kept = " ".join(keep).lower()

    def unless_kept(placeholder: str, valid=lambda found: True):
        def replace(match: re.Match[str]) -> str:
            found = match.group(0)
            if not valid(found) or (kept and found.lower() in kept):
                return found
            return placeholder

        return replace

    text = EMAIL.sub(unless_kept("[email]"), text)
    text = IBAN.sub(unless_kept("[iban]", lambda found: iban.is_valid(found)), text)
    text = CARD.sub(
        unless_kept("[card]", lambda found: luhn.is_valid(re.sub(r"\D", "", found))), text
    )
    text = _phones(text, kept)
    pattern = _custom_pattern(settings.LEARNING_REDACT_PATTERN)
    if pattern is not None:
        text = pattern.sub(unless_kept("[redacted]"), text)
    return text


def _phones(text: str, kept: str) -> str:
    region = settings.LEARNING_PHONE_REGION or None
    pieces, end = [], 0
    for match in phonenumbers.PhoneNumberMatcher(text, region):
        if kept and match.raw_string.lower() in kept:
            continue
        pieces += [text[end : match.start], "[phone]"]
        end = match.end
    return "".join(pieces) + text[end:]


@lru_cache(maxsize=4)
def _custom_pattern(source: str) -> re.Pattern[str] | None:
    return re.compile(source) if source else None
