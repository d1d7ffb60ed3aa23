"""The leak guard finds the other party's real number in outgoing bytes, in any spelling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.b2bua.leak_guard import LeakGuard, guard_for

A = "+8613800138000"  # mobile
B = "+861012345678"  # Beijing landline
GUARD = LeakGuard([A, B])
A_MASKED = "138****8000"
B_MASKED = "101****5678"


@pytest.mark.parametrize(
    ("data", "found"),
    [
        # Where a B2BUA bug would put the number.
        (b"INVITE sip:13800138000@10.0.0.2 SIP/2.0\r\n", A_MASKED),
        (b'From: "13800138000" <sip:700123456789012@10.0.0.1>;tag=1\r\n', A_MASKED),
        (b'From: "138 0013 8000" <sip:700123456789012@10.0.0.1>;tag=1\r\n', A_MASKED),
        (b"To: <sip:+8613800138000@10.0.0.2;user=phone>\r\n", A_MASKED),
        (b"Contact: <sip:13800138000@10.0.0.1:5060;transport=udp>\r\n", A_MASKED),
        (b"Contact: <sip:+8613800138000@10.0.0.1:5060>;expires=60\r\n", A_MASKED),
        (b"Call-ID: 13800138000@host\r\n", A_MASKED),
        (b"Call-ID: a84b4c76e66710-13800138000\r\n", A_MASKED),
        (b"P-Asserted-Identity: <tel:+86-138-0013-8000>\r\n", A_MASKED),
        (b"P-Preferred-Identity: <tel:13800138000;phone-context=+86>\r\n", A_MASKED),
        (b'Remote-Party-ID: "A" <sip:008613800138000@h>;party=calling\r\n', A_MASKED),
        (b"Diversion: <sip:01012345678@h>;reason=unconditional\r\n", B_MASKED),
        (
            b"History-Info: <sip:x@h?Reason=SIP%3Bcause%3D302>;index=1,<tel:+861012345678>\r\n",
            B_MASKED,
        ),
        (b"Referred-By: <sip:8613800138000@h>\r\n", A_MASKED),
        (b"Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK13800138000\r\n", A_MASKED),
        (b"v=0\r\no=13800138000 1 1 IN IP4 10.0.0.1\r\ns=-\r\n", A_MASKED),
        (b"s=call from 010-1234-5678\r\n", B_MASKED),
        # Spellings.
        (b"13800138000", A_MASKED),
        (b"013800138000", A_MASKED),
        (b"8613800138000", A_MASKED),
        (b"+8613800138000", A_MASKED),
        (b"008613800138000", A_MASKED),
        (b"+86013800138000", A_MASKED),
        (b"138-0013-8000", A_MASKED),
        (b"138.0013.8000", A_MASKED),
        (b"(138) 0013-8000", A_MASKED),
        (b"+86 138 0013 8000", A_MASKED),
        (b"+ 86 (138) 0013-8000", A_MASKED),
        (b"0086 138 0013 8000", A_MASKED),
        (b"1012345678", B_MASKED),
        (b"01012345678", B_MASKED),
        (b"(010) 1234 5678", B_MASKED),
        (b"010-12345678", B_MASKED),
        (b"+86-10-1234-5678", B_MASKED),
        (b"+86 (0)10 1234 5678", B_MASKED),
        (b"0086 10 12345678", B_MASKED),
        (b"861012345678", B_MASKED),
        # %-escaped digits, '+' and separators, either case of hex.
        (b"sip:%31%33%38%30%30%31%33%38%30%30%30@h", A_MASKED),
        (b"sip:138%30%30138000@h", A_MASKED),
        (b"sip:%2B8613800138000@h", A_MASKED),
        (b"sip:%2b86%20138%2d0013%2D8000@h", A_MASKED),
        (b"sip:138%2E0013%2e8000@h", A_MASKED),
        (b"sip:%28010%29%2012345678@h", B_MASKED),
        (b"sip:%2013800138000@h", A_MASKED),
        (b"sip:%2B%38%36%31%30%31%32%33%34%35%36%37%38@h", B_MASKED),
        # Boundaries: anything but a digit (raw or %3X) before and after.
        (b"13800138000;tag=1", A_MASKED),
        (b"x13800138000x", A_MASKED),
        (b"%13800138000", A_MASKED),
        (b"5+8613800138000", A_MASKED),  # a '+' always starts a number
        (b"%%2013800138000", A_MASKED),
    ],
)
def test_every_spelling_hits(data: bytes, found: str) -> None:
    assert GUARD.find(data) == found


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"INVITE sip:700138001380001@10.0.0.2 SIP/2.0\r\n",  # X holds A's digits
        b"sip:700101234567890@h",  # X holds B's digits
        b"13900139000",  # another mobile
        b"+8613800138001",
        b"1012345679",
        b"138001380001",  # one digit longer
        b"913800138000",
        b"1380013800",  # one digit shorter
        b"380013800",
        b"101234567",
        b"10123456789",
        b"%3113800138000",  # escaped digit before
        b"13800138000%30",  # escaped digit after
        b"13800138000%38",
        b"0013800138000",  # 00 + NSN without country code is +1 380…, not A
        b"86813800138000",
        b"c=IN IP4 10.0.0.1\r\nm=audio 10123 RTP/AVP 45678 0 8 101\r\n",
        b"138-0013-800",
        b"138 0013 80000",
    ],
)
def test_non_hits(data: bytes) -> None:
    assert GUARD.find(data) is None


def test_separator_then_more_digits_still_hits() -> None:
    """Fail closed: digits after a separator do not make the number another number."""
    assert GUARD.find(b"138-0013-8000-1") == A_MASKED
    assert GUARD.find(b"9 13800138000") == A_MASKED
    assert GUARD.find(b"8601012345678 9") == B_MASKED


def test_finds_the_number_that_is_there() -> None:
    only_a = LeakGuard([A])
    assert only_a.find(b"sip:01012345678@h") is None
    assert only_a.find(b"sip:13800138000@h") == A_MASKED
    assert LeakGuard([B]).find(b"sip:13800138000@h") is None


def test_empty_guard_finds_nothing() -> None:
    empty = LeakGuard([])
    assert not empty
    assert empty.find(b"13800138000") is None
    assert GUARD
    assert LeakGuard([""]).find(b"13800138000") is None


def test_national_input_and_foreign_numbers() -> None:
    assert LeakGuard(["13800138000"]).find(b"+86 138 0013 8000") == A_MASKED
    us = LeakGuard(["+12125551234"])
    assert us.find(b"sip:+1-212-555-1234@h") == "212****1234"
    assert us.find(b"sip:0012125551234@h") == "212****1234"
    assert us.find(b"sip:2125551234@h") == "212****1234"
    assert us.find(b"sip:13800138000@h") is None


def test_unparseable_number_is_guarded_as_its_digits() -> None:
    odd = LeakGuard(["+999123"])
    assert odd.find(b"sip:999123@h") == "****23"
    assert odd.find(b"sip:+999123@h") == "****23"
    assert odd.find(b"sip:9991234@h") is None


def test_guard_for_compiles_once_per_set() -> None:
    numbers = frozenset({A, B})
    guard = guard_for(numbers)
    assert guard_for(frozenset({B, A})) is guard
    assert guard_for(frozenset({A})) is not guard
    assert guard.find(b"sip:13800138000@h") == A_MASKED
    from_nanp = guard_for(numbers, "US")
    assert from_nanp is not guard
    assert from_nanp.find(b"sip:0118613800138000@h") == A_MASKED
    assert guard.find(b"sip:0118613800138000@h") is None


def test_leak_in_a_whole_message() -> None:
    clean = (
        b"INVITE sip:13900139000@10.0.0.2:5080 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1\r\n"
        b'From: "700138001380001" <sip:700138001380001@10.0.0.1>;tag=a1\r\n'
        b"To: <sip:13900139000@10.0.0.2>\r\n"
        b"Call-ID: 5f1c7e2a@10.0.0.1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert GUARD.find(clean) is None
    leaky = clean.replace(b"CSeq", b"Subject: call back 138 0013 8000\r\nCSeq")
    assert GUARD.find(leaky) == A_MASKED
    escaped = clean.replace(b"sip:13900139000@10.0.0.2>", b"sip:%31%33800138000@10.0.0.2>")
    assert GUARD.find(escaped) == A_MASKED


# Property tests ---------------------------------------------------------------------------

#: Every spelling the guard knows: [[international prefix] country code] [trunk 0] NSN.
A_SPELLINGS = [
    head + trunk + "13800138000" for head in ("", "86", "+86", "0086") for trunk in ("", "0")
]
B_SPELLINGS = [
    head + trunk + "1012345678" for head in ("", "86", "+86", "0086") for trunk in ("", "0")
]
SEPARATORS = [b" ", b"-", b".", b"(", b")", b"%20", b"%2D", b"%2d", b"%2E", b"%28", b"%29"]
#: Context around a number: no digits (so no digit boundary can be violated), '%' included.
CONTEXT = st.text(alphabet=st.sampled_from("abcxyz<>@:;=\"' \r\n%+-.()/"), max_size=12).map(
    str.encode
)


@st.composite
def spelled(draw: st.DrawFn, spelling: str) -> bytes:
    """``spelling`` with random separators between characters and random %-escapes."""
    parts: list[bytes] = []
    for index, char in enumerate(spelling):
        if index:
            parts.extend(draw(st.lists(st.sampled_from(SEPARATORS), max_size=2)))
        if draw(st.booleans()):
            parts.append(
                f"%{ord(char):02X}".encode()
                if draw(st.booleans())
                else f"%{ord(char):02x}".encode()
            )
        else:
            parts.append(char.encode())
    return b"".join(parts)


@given(st.data(), st.sampled_from([(A, A_SPELLINGS, A_MASKED), (B, B_SPELLINGS, B_MASKED)]))
def test_random_separators_and_escapes_always_hit(
    data: st.DataObject, case: tuple[str, list[str], str]
) -> None:
    _, spellings, masked = case
    number = data.draw(st.sampled_from(spellings).flatmap(spelled))
    before, after = data.draw(CONTEXT), data.draw(CONTEXT)
    assert GUARD.find(before + number + after) == masked


@given(
    st.lists(
        st.text(alphabet="0123456789", min_size=1, max_size=16)
        | st.sampled_from(A_SPELLINGS + B_SPELLINGS),
        max_size=6,
    ),
    st.sampled_from([b";", b"@", b"\r\n", b"<", b":", b","]),
)
def test_digit_runs_hit_exactly_when_one_is_a_spelling(runs: list[str], delimiter: bytes) -> None:
    data = delimiter.join(run.encode() for run in runs)
    hit = GUARD.find(data)
    expected = {
        A_MASKED if run in A_SPELLINGS else B_MASKED
        for run in runs
        if run in A_SPELLINGS + B_SPELLINGS
    }
    if expected:
        assert hit in expected
    else:
        assert hit is None


@given(
    st.text(alphabet="0123456789", max_size=4),
    st.sampled_from([s for s in A_SPELLINGS if s[0] != "+"]),
    st.text(alphabet="0123456789", max_size=4),
)
def test_a_longer_digit_run_is_no_hit_unless_it_is_a_spelling(
    head: str, spelling: str, tail: str
) -> None:
    """(A '+' starts a number whatever precedes it, so only '+'-less spellings here.)"""
    run = head + spelling + tail
    found = LeakGuard([A]).find(run.encode())
    assert found == (A_MASKED if run in A_SPELLINGS else None)


@given(st.integers(0, 99_999_999), st.sampled_from(["138", "139", "186"]))
def test_other_mobiles_never_hit(rest: int, prefix: str) -> None:
    other = f"{prefix}{rest:08d}"
    if other == "13800138000":
        return
    data = b";".join(
        s.encode() for s in (other, "0" + other, "86" + other, "+86" + other, "0086" + other)
    )
    assert GUARD.find(data) is None
    assert GUARD.find(f"+86 {other[:3]} {other[3:7]} {other[7:]}".encode()) is None


#: Pieces that put digits, escapes and stray '%' next to spellings in every combination.
PIECES = [
    *"0123456789+ -()x@Bd%",
    *("%2", "%3", "%20", "%2B", "%31", "%33", "%38", "%30"),
    *A_SPELLINGS,
    *B_SPELLINGS,
]


@given(st.lists(st.sampled_from(PIECES), max_size=20))
def test_prefilter_never_changes_the_verdict(pieces: list[str]) -> None:
    """The substring test only skips the regex; the regex alone decides (module docstring)."""
    data = "".join(pieces).encode()
    regex_verdict = GUARD._regex.search(data) is not None  # type: ignore[union-attr]
    assert (GUARD.find(data) is not None) == regex_verdict
