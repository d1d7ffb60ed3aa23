"""Number normalisation: privacy (700-range) numbers, real party numbers in E.164, masking.

Inputs come from SIP URI user parts (RFC 3261 §19.1.6, ``user=phone``), ``tel:`` URIs
(RFC 3966) and operator input. Visual separators (RFC 3966 §5.1.1) and ``tel`` parameters are
tolerated; %-escapes are undone by the caller (``SipUri.user_unescaped``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import phonenumbers

#: RFC 3966 §5.1.1 visual-separator ("-" / "." / "(" / ")") plus the space people type.
_VISUAL_SEPARATORS: Final = str.maketrans("", "", "-.() ")
_DIAL_FORMATS: Final = frozenset({"national", "e164"})
#: Bounded: a flood of distinct numbers must not grow memory without limit.
_REAL_CACHE_SIZE: Final = 8192


class NumberError(ValueError):
    """A number that cannot be used in the role asked for; the message names the problem."""


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _split_tel_params(text: str) -> tuple[str, dict[str, str]]:
    """Split ``[tel:]number;name=value...`` into the number and lower-cased parameters.

    RFC 3966 §3: parameters follow the number after ``;``; names are case-insensitive. A SIP
    user part written as a telephone-subscriber (RFC 3261 §19.1.6) has the same shape.
    """
    text = text.strip()
    if text[:4].lower() == "tel:":
        text = text[4:]
    number, _, tail = text.partition(";")
    params: dict[str, str] = {}
    for item in tail.split(";") if tail else ():
        name, _, value = item.partition("=")
        params[name.strip().lower()] = value.strip()
    return number.strip(), params


@functools.lru_cache(maxsize=64)
def _country_prefixes(region: str) -> tuple[str, tuple[str, ...]]:
    """The country code of ``region`` and the digit prefixes that spell it when dialled.

    ``00`` is the ITU recommended international prefix (E.164 §A.2) and China's; a region
    with a different simple prefix (``011`` in NANP) gets that one too.
    """
    country_code = str(phonenumbers.country_code_for_region(region))
    international = ["00"]
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is not None:
        for prefix in (metadata.preferred_international_prefix, metadata.international_prefix):
            if prefix and _is_ascii_digits(prefix) and prefix not in international:
                international.append(prefix)
    return country_code, (*(p + country_code for p in international), country_code)


def _privacy_digits(text: str, prefix: str, length: int, region: str) -> str | None:
    """The bare privacy number in ``text``, or None (see ``NumberPlan.privacy``)."""
    number, _ = _split_tel_params(text)
    digits = number.translate(_VISUAL_SEPARATORS)

    def fits(candidate: str) -> bool:
        return (
            len(candidate) == length
            and candidate.startswith(prefix)
            and _is_ascii_digits(candidate)
        )

    country_code, dialled_prefixes = _country_prefixes(region)
    if digits.startswith("+"):
        rest = digits[1:].removeprefix(country_code)
        return rest if rest != digits[1:] and fits(rest) else None
    if fits(digits):
        return digits
    for dialled in dialled_prefixes:
        rest = digits.removeprefix(dialled)
        if rest != digits and fits(rest):
            return rest
    return None


@functools.lru_cache(maxsize=_REAL_CACHE_SIZE)
def _normalise_real(
    text: str, region: str, privacy_prefix: str, privacy_length: int
) -> tuple[bool, str]:
    """``(True, e164)`` or ``(False, problem)``; errors are cached too, as strings.

    Caching the message instead of the exception keeps a re-raised exception from dragging
    every earlier traceback along.
    """
    if _privacy_digits(text, privacy_prefix, privacy_length, region) is not None:
        return False, "a privacy number is never a real party number"
    number, params = _split_tel_params(text)
    if "ext" in params or "isub" in params:
        return False, "extensions and subaddresses are not supported in a real party number"
    digits = number.translate(_VISUAL_SEPARATORS)
    if not digits.removeprefix("+"):
        return False, "empty number"
    if not digits.startswith("+"):
        # RFC 3966 §5.1.5: a local number with a global-number phone-context becomes global
        # by prefixing the context's digits; a domain-name context leaves it local.
        context = params.get("phone-context", "").translate(_VISUAL_SEPARATORS)
        if context.startswith("+") and _is_ascii_digits(context[1:]):
            digits = context + digits
    if not _is_ascii_digits(digits.removeprefix("+")):
        return False, "not a phone number: only digits, '+' and visual separators are allowed"
    try:
        parsed = phonenumbers.parse(digits, region)
    except phonenumbers.NumberParseException:
        return False, f"not a phone number ({mask(digits)})"
    if not phonenumbers.is_possible_number(parsed):
        return False, f"impossible phone number: wrong length ({mask(digits)})"
    if not phonenumbers.is_valid_number(parsed):
        return False, f"invalid phone number: not an assigned range ({mask(digits)})"
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if _privacy_digits(e164, privacy_prefix, privacy_length, region) is not None:
        return False, "a privacy number is never a real party number"
    return True, e164


def parse_e164(e164: str) -> phonenumbers.PhoneNumber:
    """A ``PhoneNumber`` from an E.164 string this module produced, without the cost of
    ``phonenumbers.parse`` (about 60 µs): country codes are prefix-free (E.164 §6.2.1), so
    the first 1–3 digits that name a country are the code and the rest is the national
    significant number. Numbers with a leading zero in it (Italy) take the slow path."""
    digits = e164.removeprefix("+")
    if _is_ascii_digits(digits):
        for size in (1, 2, 3):
            code = int(digits[:size])
            if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                national = digits[size:]
                if national and national[0] != "0":
                    return phonenumbers.PhoneNumber(
                        country_code=code, national_number=int(national)
                    )
                break
    return phonenumbers.parse(e164, None)


@functools.lru_cache(maxsize=_REAL_CACHE_SIZE)
def _national_dial_digits(e164: str, region: str) -> str | None:
    """Digits a subscriber in ``region`` dials for ``e164`` (trunk prefix included), or None
    when the number belongs to another region."""
    parsed = parse_e164(e164)
    if phonenumbers.region_code_for_number(parsed) != region:
        return None
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(c for c in national if "0" <= c <= "9")


@dataclass(frozen=True, slots=True)
class NumberPlan:
    """Which numbers are privacy numbers and how real numbers are written and dialled.

    Defaults follow the 700 range: usage length 15 digits, ``700`` + 12 (design §1). During
    the transition the legacy 11-digit 170/171 numbers are configured here instead.
    """

    privacy_prefix: str = "700"
    privacy_length: int = 15
    region: str = "CN"
    dial_format: str = "national"  # or "e164"

    def __post_init__(self) -> None:
        if not _is_ascii_digits(self.privacy_prefix):
            raise ValueError(f"privacy_prefix must be digits, not {self.privacy_prefix!r}")
        if self.privacy_length <= len(self.privacy_prefix):
            raise ValueError("privacy_length must be longer than privacy_prefix")
        if self.region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {self.region!r}")
        if self.dial_format not in _DIAL_FORMATS:
            raise ValueError(f"dial_format must be 'national' or 'e164', not {self.dial_format!r}")

    def privacy(self, text: str) -> str:
        """The bare digits of the privacy number written in ``text``.

        Strips visual separators (RFC 3966 §5.1.1), ``tel:`` and its parameters
        (``;phone-context=``, RFC 3966 §3; ``;user=phone``), and a leading ``+86`` / ``0086`` /
        ``86`` when what remains is a privacy number.
        """
        digits = _privacy_digits(text, self.privacy_prefix, self.privacy_length, self.region)
        if digits is None:
            raise NumberError(
                f"not a privacy number: expected {self.privacy_length} digits"
                f" starting {self.privacy_prefix}"
            )
        return digits

    def is_privacy(self, text: str) -> bool:
        """Whether ``text`` is a privacy number of this plan (see ``privacy``)."""
        return (
            _privacy_digits(text, self.privacy_prefix, self.privacy_length, self.region) is not None
        )

    def real(self, text: str) -> str:
        """A real party number in E.164 with ``+``, validated against the numbering plan.

        Accepts national (``13800138000``, ``010 12345678``), international (``+86 …``,
        ``0086…``, ``86…``) and ``tel:`` forms; a local number with a global ``phone-context``
        becomes global (RFC 3966 §5.1.5). A privacy number is never a real party.
        """
        ok, value = _normalise_real(text, self.region, self.privacy_prefix, self.privacy_length)
        if not ok:
            raise NumberError(value)
        return value

    def dial(self, e164: str) -> str:
        """The user part for the B-leg Request-URI: national digits with the trunk prefix
        (``13800138000``, ``01012345678``) for a number of the plan's region when the plan
        dials nationally, else E.164 with ``+``."""
        return self.dial_normalised(self.real(e164))

    def dial_normalised(self, e164: str) -> str:
        """``dial`` for a number ``real`` already returned (a binding's party): skips the
        validation that costs a ``phonenumbers.parse`` on every call."""
        if self.dial_format == "national":
            national = _national_dial_digits(e164, self.region)
            if national is not None:
                return national
        return e164


def _national_significant(digits: str) -> str:
    """Drop the country code of E.164 digits; country codes are prefix-free (E.164 §6.2.1)."""
    for size in (1, 2, 3):
        head = digits[:size]
        if len(digits) > size and int(head) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return digits[size:]
    return digits


def mask(number: str) -> str:
    """A number fit for logs and masked exports: ``+8613800138000`` -> ``138****8000``.

    First 3 and last 4 digits of the national significant number; fewer than 8 digits keep
    only the last 2. Never raises: anything without digits masks to ``""``.
    """
    digits = "".join(c for c in number if "0" <= c <= "9")
    first = next((c for c in number if c == "+" or "0" <= c <= "9"), "")
    if first == "+":
        digits = _national_significant(digits)
    if len(digits) >= 8:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 2:
        return "*" * (len(digits) - 2) + digits[-2:]
    return "*" * len(digits)
