"""The leak guard: the last check on every outgoing message (design §4, privacy rules).

Just before a message is written to a socket, the transport asks the guard of the call whether
the real number of the party on the other leg appears in the bytes, in any form a SIP or SDP
writer could produce: national (``13800138000``, ``01012345678``), international (``+86…``,
``0086…``, ``86…``), with visual separators (RFC 3966 §5.1.1) or with characters %-escaped
(RFC 3261 §25.1 ``escaped``, RFC 3986 §2.1: hex digits in either case). A hit blocks the message.

A digit run that merely contains the number is no hit: the privacy number ``700138001380001``
holds the digits ``13800138000`` but is not that number. Matches therefore need a digit
boundary on both sides: neither a digit nor a ``%3X`` escaped digit.

Speed: one compiled regex per set of numbers, the single judge of a hit. Its alternatives are
laid out as a trie whose top level starts with literal bytes, so that the regex engine skips to
candidate bytes in C instead of trying every offset; the boundary lookbehind comes right after
that first byte.

A cheaper test runs first and lets clean messages skip the regex: every spelling ends with the
national significant number (NSN), so once separators are deleted (and, when the message has a
'%', escapes undone in one left-to-right pass) a match leaves the NSN as a substring. The one
distortion is a stray '%' just before a match, which can swallow its first two raw bytes into
a bogus escape; for messages with a '%' the test therefore looks for the NSN minus its first
two digits. No substring, no match: the regex stays the judge and the test only skips work.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote_to_bytes

import phonenumbers

from proxy.numbers import mask, parse_e164

#: Visual separators (RFC 3966 §5.1.1 plus space) as the prefilter deletes them.
_RAW_SEPARATORS: Final = b" -.()"
#: Visual separators between any two digits: " - . ( )" raw or %-escaped.
_SEPARATORS: Final = rb"(?:[ \-.()]|%2[0dDeE89])*"
#: The end of a number: no digit, raw or escaped, follows.
_END: Final = rb"(?![0-9]|%3[0-9])"
#: Compiled guards kept; a busy proxy holds about one per concurrent call.
_GUARD_CACHE_SIZE: Final = 4096


def _token(char: str) -> bytes:
    """One digit or '+' anywhere after the first position: raw or %-escaped."""
    if char == "+":
        return rb"(?:\+|%2[bB])"
    return b"(?:%s|%%3%s)" % (char.encode(), char.encode())


def _not_after_digit(width: int) -> bytes:
    """Lookbehind, placed after a first token of ``width`` bytes: no digit precedes it.

    A digit is raw (but not the tail of a %2X separator escape such as ``%20`` or ``%28``,
    which must not hide the number that follows) or escaped (``%3X``).
    """
    skip = b"." * width
    return rb"(?<!(?<!%2)[0-9]" + skip + rb")(?<!%3[0-9]" + skip + b")"


def _first_tokens(char: str) -> list[bytes]:
    """Spellings of the first character, each starting with a literal byte.

    The boundary lookbehind sits after the first byte(s) so that the pattern still starts with
    a literal. A '+' starts a number whatever precedes it.
    """
    if char == "+":
        return [rb"\+", rb"%2[bB]"]
    digit = char.encode()
    return [digit + _not_after_digit(1), b"%3" + digit + _not_after_digit(3)]


@dataclass(slots=True)
class _TrieNode:
    children: dict[str, _TrieNode] = field(default_factory=dict)
    terminal: bool = False

    def add(self, text: str) -> None:
        node = self
        for char in text:
            node = node.children.setdefault(char, _TrieNode())
        node.terminal = True

    def continuation(self) -> bytes:
        """The pattern for what may follow the character that led to this node."""
        alternatives = [_END] if self.terminal else []
        if self.children:
            branches = b"|".join(
                _token(char) + child.continuation() for char, child in sorted(self.children.items())
            )
            alternatives.append(_SEPARATORS + b"(?:" + branches + b")")
        return b"(?:" + b"|".join(alternatives) + b")"

    def pattern(self) -> bytes:
        return b"|".join(
            first + child.continuation()
            for char, child in sorted(self.children.items())
            for first in _first_tokens(char)
        )


def _international_prefixes(region: str) -> tuple[str, ...]:
    """Digits dialled before a country code from ``region``: ``00`` (ITU) and the region's."""
    prefixes = ["00"]
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    if metadata is not None:
        for prefix in (metadata.preferred_international_prefix, metadata.international_prefix):
            if prefix and prefix.isascii() and prefix.isdigit() and prefix not in prefixes:
                prefixes.append(prefix)
    return tuple(prefixes)


def _parse(number: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        if number.startswith("+"):
            return parse_e164(number)
        return phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None


@functools.lru_cache(maxsize=_GUARD_CACHE_SIZE)
def _common_digits(number: str, region: str) -> str:
    """The digits every spelling of ``number`` contains (``_spellings(...)[0]``) without
    working out the spellings: the prefilter needs these alone, the spellings are for
    the rare message that gets past it.

    Every call brings new numbers, in E.164 as the core writes them: their NSN is what
    follows the country code (codes are prefix-free, E.164 §6.2.1), read here without
    building a ``PhoneNumber``. An NSN with a leading zero (Italy) takes the long way."""
    digits = number[1:]
    if number[:1] == "+" and digits.isascii() and digits.isdigit():
        for size in (1, 2, 3):
            if int(digits[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                national = digits[size:]
                if national and national[0] != "0":
                    return national
                break
    parsed = _parse(number, region)
    if parsed is None or not parsed.national_number:
        return "".join(c for c in number if "0" <= c <= "9")
    return phonenumbers.national_significant_number(parsed)


@functools.lru_cache(maxsize=_GUARD_CACHE_SIZE)
def _spellings(number: str, region: str) -> tuple[str, frozenset[str]]:
    """The digits every spelling of ``number`` contains, and every spelling: digit strings
    (with '+' where written) that denote it.

    national significant number, trunk prefix + NSN, and country code (bare, after '+' or an
    international prefix) + NSN, with or without the trunk prefix ("+86 (0)10 …"). A number
    phonenumbers cannot read is guarded as its bare digits, so the guard fails closed.
    """
    digits = "".join(c for c in number if "0" <= c <= "9")
    parsed = _parse(number, region)
    if parsed is None or not parsed.national_number:
        return digits, frozenset({digits, "+" + digits}) if digits else frozenset()
    country = str(parsed.country_code)
    national = phonenumbers.national_significant_number(parsed)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(
        phonenumbers.region_code_for_number(parsed) or region
    )
    trunk = metadata.national_prefix if metadata is not None and metadata.national_prefix else ""
    nationals = {national, trunk + national}
    heads = {"", "+" + country, country} | {p + country for p in _international_prefixes(region)}
    return national, frozenset(head + nat for head in heads for nat in nationals)


def _canonical(match: bytes) -> str:
    """A matched spelling with escapes undone and separators dropped: the key of a number."""
    return "".join(chr(b) for b in unquote_to_bytes(match) if b == 0x2B or 0x30 <= b <= 0x39)


class LeakGuard:
    """Finds the real numbers it was built from, in any spelling, in outgoing bytes."""

    __slots__ = ("_escaped_needles", "_needles", "_numbers", "_owners", "_regex", "_region")

    def __init__(self, numbers: Iterable[str], region: str = "CN") -> None:
        # Only the prefilter's needles are worked out here; the spellings and their regex
        # wait for the first message that gets past the prefilter (clean traffic never
        # does), since every call has its own numbers. A number with no digits has no
        # spelling and no needle.
        self._numbers = tuple(numbers)
        self._region = region
        needles = {common.encode() for n in self._numbers if (common := _common_digits(n, region))}
        self._needles = tuple(needles)
        self._escaped_needles = tuple({needle[2:] for needle in needles})
        self._owners: dict[str, str] | None = None
        self._regex: re.Pattern[bytes] | None = None

    def _owner(self) -> dict[str, str]:
        """Every spelling → the number it spells."""
        if self._owners is None:
            owners: dict[str, str] = {}
            for number in self._numbers:
                for spelling in _spellings(number, self._region)[1]:
                    owners.setdefault(spelling, number)
            self._owners = owners
        return self._owners

    def _compiled(self) -> re.Pattern[bytes]:
        """The regex, built on first need: building and compiling it costs ~15 ms, and every
        call has its own numbers, while clean traffic almost never gets past the prefilter."""
        if self._regex is None:
            trie = _TrieNode()
            for spelling in self._owner():
                trie.add(spelling)
            self._regex = re.compile(trie.pattern(), re.DOTALL)
        return self._regex

    def find(self, data: bytes) -> str | None:
        """The masked number found in ``data`` (for the log line), or None when clean."""
        if not self._needles:
            return None
        if b"%" in data:
            digits_together = unquote_to_bytes(data).translate(None, _RAW_SEPARATORS)
            needles = self._escaped_needles
        else:
            digits_together = data.translate(None, _RAW_SEPARATORS)
            needles = self._needles
        if not any(needle in digits_together for needle in needles):
            return None
        match = self._compiled().search(data)
        if match is None:
            return None
        spelling = _canonical(match.group())
        return mask(self._owner().get(spelling, spelling))

    def __bool__(self) -> bool:
        return bool(self._needles)


@functools.lru_cache(maxsize=_GUARD_CACHE_SIZE)
def guard_for(numbers: frozenset[str], region: str = "CN") -> LeakGuard:
    """The guard for one call's numbers, compiled once and reused for every message.

    ``region`` is the plan's: it decides the international prefixes (``00``; ``011`` in NANP).
    """
    return LeakGuard(numbers, region)
