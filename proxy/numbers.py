"""Number normalisation: privacy (700-range) numbers, real party numbers in E.164, masking.

Inputs come from SIP URI user parts (RFC 3261 §19.1.6, ``user=phone``), ``tel:`` URIs
(RFC 3966) and operator input. Visual separators (RFC 3966 §5.1.1) and ``tel`` parameters are
tolerated; %-escapes are undone by the caller (``SipUri.user_unescaped``).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import functools
import re
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


def _bare_number(text: str) -> tuple[str, dict[str, str]]:
    """``_split_tel_params`` with the visual separators dropped from the number; a plain
    ``[+]digits`` text, the usual SIP user part, is returned as is without the string passes."""
    if text.isascii() and (text.isdigit() or (text[:1] == "+" and text[1:].isdigit())):
        return text, {}
    number, params = _split_tel_params(text)
    return number.translate(_VISUAL_SEPARATORS), params


def _privacy_in(digits: str, prefix: str, length: int, region: str) -> str | None:
    """The privacy number spelt by ``digits`` (separators and parameters already dropped)."""
    country_code, dialled_prefixes = _country_prefixes(region)
    if digits[:1] == "+":
        if len(digits) == 1 + len(country_code) + length and digits.startswith(country_code, 1):
            rest = digits[1 + len(country_code) :]
            if rest.startswith(prefix) and _is_ascii_digits(rest):
                return rest
        return None
    if len(digits) == length and digits.startswith(prefix) and _is_ascii_digits(digits):
        return digits
    for dialled in dialled_prefixes:
        if len(digits) == len(dialled) + length and digits.startswith(dialled):
            rest = digits[len(dialled) :]
            if rest.startswith(prefix) and _is_ascii_digits(rest):
                return rest
    return None


def _privacy_digits(text: str, prefix: str, length: int, region: str) -> str | None:
    """The bare privacy number in ``text``, or None (see ``NumberPlan.privacy``)."""
    return _privacy_in(_bare_number(text)[0], prefix, length, region)


_PRIVACY_IS_NOT_REAL: Final = "a privacy number is never a real party number"


@functools.lru_cache(maxsize=_REAL_CACHE_SIZE)
def _normalise_real(
    text: str, region: str, privacy_prefix: str, privacy_length: int
) -> tuple[bool, str]:
    """``(True, e164)`` or ``(False, problem)``; errors are cached too, as strings.

    Caching the message instead of the exception keeps a re-raised exception from dragging
    every earlier traceback along. Same steps and results as the reference in
    tests/unit/test_numbers.py, with the number split once and ``phonenumbers.parse``
    replaced by ``_parse_plain`` when that can tell.
    """
    digits, params = _bare_number(text)
    if _privacy_in(digits, privacy_prefix, privacy_length, region) is not None:
        return False, _PRIVACY_IS_NOT_REAL
    if params and ("ext" in params or "isub" in params):
        return False, "extensions and subaddresses are not supported in a real party number"
    if not digits.removeprefix("+"):
        return False, "empty number"
    if params and not digits.startswith("+"):
        context = params.get("phone-context", "").translate(_VISUAL_SEPARATORS)
        if context.startswith("+") and _is_ascii_digits(context[1:]):
            digits = context + digits
    if not _is_ascii_digits(digits.removeprefix("+")):
        return False, "not a phone number: only digits, '+' and visual separators are allowed"
    parsed = _parse_plain(digits, region)
    if parsed is None:
        try:
            parsed = phonenumbers.parse(digits, region)
        except phonenumbers.NumberParseException:
            return False, f"not a phone number ({mask(digits)})"
    if not phonenumbers.is_possible_number(parsed):
        return False, f"impossible phone number: wrong length ({mask(digits)})"
    if not phonenumbers.is_valid_number(parsed):
        return False, f"invalid phone number: not an assigned range ({mask(digits)})"
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if _privacy_in(e164, privacy_prefix, privacy_length, region) is not None:
        return False, _PRIVACY_IS_NOT_REAL
    return True, e164


#: phonenumbers' limits on what ``parse`` accepts (input string, national significant number).
_MAX_PARSE_INPUT: Final = 250
_MIN_NSN: Final = 2
_MAX_NSN: Final = 17
#: ``phonenumbers.parse`` uses this IDD pattern for a region without one: it never matches.
_NO_IDD: Final = "NonMatch"


@dataclass(frozen=True, slots=True)
class _NationalRules:
    """The parts of one region's metadata that ``phonenumbers.parse`` reads, compiled once."""

    country_code: int
    idd: re.Pattern[str]
    national_prefix: re.Pattern[str] | None
    #: A transform rule rewrites the number instead of stripping; ``_parse_plain`` leaves
    #: such numbers to ``phonenumbers.parse``.
    transforms: bool
    general: re.Pattern[str] | None
    possible_lengths: tuple[int, ...] | None
    local_lengths: tuple[int, ...]


@functools.lru_cache(maxsize=512)
def _national_rules(country_code: int, region: str) -> _NationalRules | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None
    general = metadata.general_desc
    general_pattern = general.national_number_pattern if general is not None else None
    prefix = metadata.national_prefix_for_parsing
    idd = metadata.international_prefix
    return _NationalRules(
        country_code=metadata.country_code or 0,
        idd=re.compile(_NO_IDD if idd is None else idd),
        national_prefix=re.compile(prefix) if prefix else None,
        transforms=bool(metadata.national_prefix_transform_rule),
        general=re.compile(general_pattern) if general_pattern else None,
        possible_lengths=general.possible_length if general is not None else None,
        local_lengths=general.possible_length_local_only if general is not None else (),
    )


def _keeps_stripped_length(national: str, rules: _NationalRules) -> bool:
    """Whether ``parse`` keeps a number stripped of its national prefix: phonenumbers'
    ``_test_number_length`` (general description) says possible or too long."""
    lengths = rules.possible_lengths
    if lengths is None or len(national) in rules.local_lengths:
        return False
    actual = len(national)
    if lengths[0] >= actual:
        return lengths[0] == actual
    return lengths[-1] < actual or actual in lengths[1:]


def _strip_national_prefix(national: str, rules: _NationalRules) -> str | None:
    """``national`` as ``phonenumbers.parse`` leaves it after national prefix stripping, or
    None when a transform rule would apply (not reproduced here)."""
    if rules.national_prefix is None:
        return national
    match = rules.national_prefix.match(national)
    if match is None:
        return national
    if rules.transforms:
        return None
    stripped = national[match.end() :]
    general = rules.general
    if (
        general is not None
        and general.fullmatch(national) is not None
        and general.fullmatch(stripped) is None
    ):
        return national
    return stripped if _keeps_stripped_length(stripped, rules) else national


def _phone_number(country_code: int, national: str) -> phonenumbers.PhoneNumber | None:
    """The ``PhoneNumber`` ``parse`` builds from a national significant number, leading zeros
    (Italy) recorded the way it records them."""
    if not _MIN_NSN <= len(national) <= _MAX_NSN:
        return None
    parsed = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
    if len(national) > 1 and national[0] == "0":
        parsed.italian_leading_zero = True
        zeros = 1
        while zeros < len(national) - 1 and national[zeros] == "0":
            zeros += 1
        if zeros != 1:
            parsed.number_of_leading_zeros = zeros
    return parsed


def _parse_international(digits: str, region: str) -> phonenumbers.PhoneNumber | None:
    """``parse`` of digits that follow ``+`` or an IDD: country code, then national number."""
    if len(digits) <= _MIN_NSN or digits[0] == "0":
        return None
    for size in (1, 2, 3):
        country_code = int(digits[:size])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    number_region = phonenumbers.region_code_for_country_code(country_code)
    rules = _national_rules(country_code, region if number_region == region else number_region)
    national = digits[size:]
    if rules is None or len(national) < _MIN_NSN:
        return None
    stripped = _strip_national_prefix(national, rules)
    return None if stripped is None else _phone_number(country_code, stripped)


def _parse_plain(digits: str, region: str) -> phonenumbers.PhoneNumber | None:
    """``phonenumbers.parse(digits, region)`` for ``[+]digits`` (ASCII), built directly, or
    None when this cannot tell (then ``parse`` decides, errors included).

    Covers what callers send: ``+CC…``, IDD + CC (``0086…``) and national numbers with or
    without the trunk prefix. Left to ``parse``: numbers it would reject, a national number
    starting with the region's own country code (``parse`` then weighs both readings), IDD
    followed by ``0``, and national prefix transform rules.
    """
    if len(digits) > _MAX_PARSE_INPUT:
        return None
    if digits[:1] == "+":
        return _parse_international(digits[1:], region)
    rules = _national_rules(phonenumbers.country_code_for_region(region), region)
    if rules is None or len(digits) < 3:
        return None
    idd = rules.idd.match(digits)
    if idd is not None:
        after_idd = digits[idd.end() :]
        if after_idd[:1] == "0" or not after_idd:
            return None
        return _parse_international(after_idd, region)
    if digits.startswith(str(rules.country_code)):
        return None
    stripped = _strip_national_prefix(digits, rules)
    return None if stripped is None else _phone_number(rules.country_code, stripped)


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


#: A ``\\N`` group reference in a number format (phonenumbers' ``_FIRST_GROUP_PATTERN``).
_FIRST_GROUP: Final = re.compile(r"(\\\d)")
_NOT_DIGITS: Final = re.compile(r"[^0-9]+")


@dataclass(frozen=True, slots=True)
class _NationalFormat:
    """One national number format: which numbers it takes and how it writes them, with the
    trunk prefix (``$NP``) already placed in the first group as its formatting rule says."""

    leading_digits: re.Pattern[str] | None
    pattern: re.Pattern[str]
    template: str


@functools.lru_cache(maxsize=64)
def _national_formats(country_code: int) -> tuple[_NationalFormat, ...]:
    """The formats ``format_number(…, NATIONAL)`` chooses from for ``country_code``: the main
    region's ``number_format`` list, in order."""
    main_region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        country_code, main_region.upper()
    )
    if metadata is None:
        return ()
    formats = []
    for number_format in metadata.number_format:
        rule = number_format.national_prefix_formatting_rule
        template = number_format.format or ""
        if rule:
            template = _FIRST_GROUP.sub(rule, template, count=1)
        leading = number_format.leading_digits_pattern
        formats.append(
            _NationalFormat(
                leading_digits=re.compile(leading[-1]) if leading else None,
                pattern=re.compile(number_format.pattern or ""),
                template=template,
            )
        )
    return tuple(formats)


@functools.lru_cache(maxsize=_REAL_CACHE_SIZE)
def _national_dial_digits(e164: str, region: str) -> str | None:
    """Digits a subscriber in ``region`` dials for ``e164`` (trunk prefix included), or None
    when the number belongs to another region.

    The digits of ``format_number(…, NATIONAL)``, computed from the same format the library
    would choose (first whose leading digits and pattern match) without its per-call regex
    compilation."""
    parsed = parse_e164(e164)
    if phonenumbers.region_code_for_number(parsed) != region:
        return None
    if parsed.extension or parsed.raw_input is not None:
        return _national_dial_digits_general(e164, region)
    national = phonenumbers.national_significant_number(parsed)
    for number_format in _national_formats(parsed.country_code):
        leading = number_format.leading_digits
        if (leading is None or leading.match(national)) and number_format.pattern.fullmatch(
            national
        ):
            return _NOT_DIGITS.sub("", number_format.pattern.sub(number_format.template, national))
    return _NOT_DIGITS.sub("", national)


def _national_dial_digits_general(e164: str, region: str) -> str | None:
    """``_national_dial_digits`` through ``phonenumbers.format_number``, uncached: the
    reference the fast one is tested against."""
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
