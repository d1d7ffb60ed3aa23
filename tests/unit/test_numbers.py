"""Number normalisation: privacy numbers, real numbers in E.164, dial strings, masks."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from proxy import numbers
from proxy.numbers import NumberError, NumberPlan, mask


def reference_privacy_digits(text: str, prefix: str, length: int, region: str) -> str | None:
    """``numbers._privacy_digits`` as first written: the reference the fast one is
    tested against."""
    number, _ = numbers._split_tel_params(text)
    digits = number.translate(numbers._VISUAL_SEPARATORS)

    def fits(candidate: str) -> bool:
        return (
            len(candidate) == length
            and candidate.startswith(prefix)
            and numbers._is_ascii_digits(candidate)
        )

    country_code, dialled_prefixes = numbers._country_prefixes(region)
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


def reference_normalise_real(
    text: str, region: str, privacy_prefix: str, privacy_length: int
) -> tuple[bool, str]:
    """``numbers._normalise_real`` as first written, uncached: the reference the fast one
    is tested against."""
    if reference_privacy_digits(text, privacy_prefix, privacy_length, region) is not None:
        return False, numbers._PRIVACY_IS_NOT_REAL
    number, params = numbers._split_tel_params(text)
    if "ext" in params or "isub" in params:
        return False, "extensions and subaddresses are not supported in a real party number"
    digits = number.translate(numbers._VISUAL_SEPARATORS)
    if not digits.removeprefix("+"):
        return False, "empty number"
    if not digits.startswith("+"):
        # RFC 3966 §5.1.5: a local number with a global-number phone-context becomes global
        # by prefixing the context's digits; a domain-name context leaves it local.
        context = params.get("phone-context", "").translate(numbers._VISUAL_SEPARATORS)
        if context.startswith("+") and numbers._is_ascii_digits(context[1:]):
            digits = context + digits
    if not numbers._is_ascii_digits(digits.removeprefix("+")):
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
    if reference_privacy_digits(e164, privacy_prefix, privacy_length, region) is not None:
        return False, numbers._PRIVACY_IS_NOT_REAL
    return True, e164


PLAN = NumberPlan()
PRIVACY_ERROR = "not a privacy number: expected 15 digits starting 700"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("700123456789012", "700123456789012"),
        ("700-1234-5678-9012", "700123456789012"),
        ("700.1234.5678.9012", "700123456789012"),
        ("(700) 1234 5678 9012", "700123456789012"),
        (" 700123456789012 ", "700123456789012"),
        ("+86700123456789012", "700123456789012"),
        ("+86 700 1234 5678 9012", "700123456789012"),
        ("+86-700-123456789012", "700123456789012"),
        ("0086700123456789012", "700123456789012"),
        ("86700123456789012", "700123456789012"),
        ("tel:+86-700-1234-5678-9012", "700123456789012"),
        ("TEL:700123456789012", "700123456789012"),
        ("700123456789012;phone-context=+86", "700123456789012"),
        ("tel:700123456789012;phone-context=example.com", "700123456789012"),
        ("+86700123456789012;user=phone", "700123456789012"),
    ],
)
def test_privacy_accepts(text: str, expected: str) -> None:
    assert PLAN.privacy(text) == expected
    assert PLAN.is_privacy(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "70012345678901",  # one digit short
        "7001234567890123",  # one digit long
        "701123456789012",  # wrong prefix
        "13800138000",  # a real mobile
        "+8613800138000",
        "+700123456789012",  # '+' must be followed by the country code
        "+1700123456789012",  # another country's code
        "+8686700123456789012",  # country code twice
        "0700123456789012",  # trunk prefix is not a privacy spelling
        "700123456789O12",  # letter O
        "700123456789%312",  # escapes are undone by the caller, not here
        "７００１２３４５６７８９０１２",  # full-width digits
        "700_123456789012",
        "86 7001234567890",  # 86 + 13 digits: what remains is no privacy number
    ],
)
def test_privacy_rejects(text: str) -> None:
    with pytest.raises(NumberError, match=f"^{PRIVACY_ERROR}$"):
        PLAN.privacy(text)
    assert not PLAN.is_privacy(text)


def test_privacy_plan_is_configurable_for_legacy_numbers() -> None:
    legacy = NumberPlan(privacy_prefix="170", privacy_length=11)
    assert legacy.privacy("+86 170 1234 5678") == "17012345678"
    with pytest.raises(NumberError, match="expected 11 digits starting 170"):
        legacy.privacy("700123456789012")
    with pytest.raises(NumberError, match="never a real party"):
        legacy.real("17012345678")


def test_privacy_number_is_not_unwrapped_when_it_fits_as_written() -> None:
    """A number that already fits is taken as is: "86..." is only a country code otherwise."""
    plan = NumberPlan(privacy_prefix="86", privacy_length=10)
    assert plan.privacy("8612345678") == "8612345678"
    assert plan.privacy("868612345678") == "8612345678"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("13800138000", "+8613800138000"),
        ("138 0013 8000", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+8613800138000", "+8613800138000"),
        ("008613800138000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("86 138 0013 8000", "+8613800138000"),
        ("+86-10-1234-5678", "+861012345678"),
        ("010 12345678", "+861012345678"),
        ("(010) 1234-5678", "+861012345678"),
        ("01012345678", "+861012345678"),
        ("+86 (0)10 1234 5678", "+861012345678"),
        ("0086 10 12345678", "+861012345678"),
        ("0755 1234 5678", "+8675512345678"),
        ("tel:+86-138-0013-8000", "+8613800138000"),
        ("tel:13800138000;phone-context=+86", "+8613800138000"),
        ("tel:12345678;phone-context=+86-10", "+861012345678"),
        ("12345678;phone-context=+86-10", "+861012345678"),
        ("tel:010-12345678;phone-context=+86", "+861012345678"),
        ("tel:13800138000;phone-context=example.com", "+8613800138000"),
        ("+8613800138000;user=phone", "+8613800138000"),
        ("+1 212 555 1234", "+12125551234"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_real_accepts(text: str, expected: str) -> None:
    assert PLAN.real(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "^empty number$"),
        ("tel:;phone-context=+86", "^empty number$"),
        ("abc", "only digits, '\\+' and visual separators"),
        ("138 0013 800O", "only digits"),
        ("+86 138 0013 8000 ext 5", "only digits"),
        ("138+00138000", "only digits"),
        ("tel:13800138000;ext=12", "extensions and subaddresses"),
        ("tel:13800138000;isub=12", "extensions and subaddresses"),
        ("123", r"^impossible phone number: wrong length \(\*23\)$"),
        ("1380013800012345", "impossible phone number"),
        (
            "12345678;phone-context=+86",
            r"^invalid phone number: not an assigned range \(123\*\*\*\*5678\)$",
        ),
        ("+86 100 0000 0000", "invalid phone number"),
        ("700123456789012", "^a privacy number is never a real party number$"),
        ("+86 700 1234 5678 9012", "never a real party"),
        ("tel:700123456789012;phone-context=+86", "never a real party"),
        ("+", "^empty number$"),
        ("+ -", "^empty number$"),
    ],
)
def test_real_rejects(text: str, message: str) -> None:
    with pytest.raises(NumberError, match=message):
        PLAN.real(text)


def test_real_error_messages_never_carry_the_number_unmasked() -> None:
    with pytest.raises(NumberError) as caught:
        PLAN.real("138001380001")
    assert "138001380001" not in str(caught.value)
    assert "138****0001" in str(caught.value)


def test_real_rejects_again_from_the_cache() -> None:
    for _ in range(3):
        with pytest.raises(NumberError, match="impossible"):
            PLAN.real("12")


@pytest.mark.parametrize(
    ("e164", "national", "international"),
    [
        ("+8613800138000", "13800138000", "+8613800138000"),
        ("+861012345678", "01012345678", "+861012345678"),
        ("+8675512345678", "075512345678", "+8675512345678"),
        ("+12125551234", "+12125551234", "+12125551234"),
    ],
)
def test_dial(e164: str, national: str, international: str) -> None:
    assert PLAN.dial(e164) == national
    assert NumberPlan(dial_format="e164").dial(e164) == international


def test_dial_normalises_and_validates_its_input() -> None:
    assert PLAN.dial("+86 138-0013-8000") == "13800138000"
    with pytest.raises(NumberError, match="never a real party"):
        PLAN.dial("+86700123456789012")


def test_dial_national_only_in_the_plans_region() -> None:
    us_plan = NumberPlan(region="US")
    assert us_plan.dial("+12125551234") == "2125551234"
    assert us_plan.dial("+8613800138000") == "+8613800138000"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"privacy_prefix": "7a0"}, "privacy_prefix must be digits"),
        ({"privacy_prefix": ""}, "privacy_prefix must be digits"),
        ({"privacy_length": 3}, "privacy_length must be longer"),
        ({"region": "XX"}, "unknown region"),
        ({"dial_format": "E.164"}, "dial_format must be"),
    ],
)
def test_plan_rejects_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NumberPlan(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+8613800138000", "138****8000"),
        ("13800138000", "138****8000"),
        ("+861012345678", "101****5678"),
        ("01012345678", "010****5678"),
        ("+12125551234", "212****1234"),
        ("+442079460958", "207****0958"),
        ("tel:+8613800138000", "138****8000"),
        ("700123456789012", "700****9012"),
        ("138-0013-8000", "138****8000"),
        ("12345678", "123****5678"),
        ("1234567", "*****67"),
        ("123", "*23"),
        ("12", "**"),
        ("7", "*"),
        ("", ""),
        ("anonymous", ""),
        ("+", ""),
        ("+1", "*"),
        ("٣٣٣٣٣٣٣٣٣", ""),
    ],
)
def test_mask(number: str, masked: str) -> None:
    assert mask(number) == masked


@given(st.text())
def test_mask_never_raises_and_never_shows_more_than_seven_digits(text: str) -> None:
    masked = mask(text)
    assert sum(c.isdigit() for c in masked) <= 7


def _cn_mobiles() -> st.SearchStrategy[str]:
    prefixes = st.sampled_from(["130", "135", "138", "139", "150", "158", "177", "186", "199"])
    return st.builds(lambda p, rest: f"+86{p}{rest:08d}", prefixes, st.integers(0, 99_999_999))


def _cn_landlines() -> st.SearchStrategy[str]:
    # Beijing and Shanghai: 2-digit area code, 8-digit subscriber number starting 2-8.
    beijing_shanghai = st.builds(
        lambda area, first, rest: f"+86{area}{first}{rest:07d}",
        st.sampled_from(["10", "21"]),
        st.integers(2, 8),
        st.integers(0, 9_999_999),
    )
    # Shenzhen and Guangzhou: 3-digit area code.
    shenzhen_guangzhou = st.builds(
        lambda area, first, rest: f"+86{area}{first}{rest:07d}",
        st.sampled_from(["755", "20"]),
        st.integers(2, 8),
        st.integers(0, 9_999_999),
    )
    return beijing_shanghai | shenzhen_guangzhou


@given(_cn_mobiles() | _cn_landlines())
def test_real_of_dial_round_trips(e164: str) -> None:
    # Valid means assigned in the numbering plan metadata; a few generated ranges are not.
    assume(phonenumbers.is_valid_number(phonenumbers.parse(e164)))
    assert PLAN.real(e164) == e164
    dialled = PLAN.dial(e164)
    assert dialled.isdigit() and not dialled.startswith("86")
    assert PLAN.real(dialled) == e164
    assert NumberPlan(dial_format="e164").dial(e164) == e164


@given(st.integers(0, 10**12 - 1), st.sampled_from(["", "+86", "0086", "86", "+86 "]))
def test_every_privacy_number_round_trips(tail: int, country: str) -> None:
    digits = f"700{tail:012d}"
    spaced = "-".join(digits[i : i + 4] for i in range(0, 15, 4))
    assert PLAN.privacy(country + spaced) == digits
    with pytest.raises(NumberError, match="never a real party"):
        PLAN.real(country + digits)


# -- the fast paths return exactly what the general ones do ---------------------------------

EQUIVALENCE_REGIONS = ("CN", "US", "GB", "DE", "IT", "JP")
_TYPES = (
    phonenumbers.PhoneNumberType.FIXED_LINE,
    phonenumbers.PhoneNumberType.MOBILE,
    phonenumbers.PhoneNumberType.TOLL_FREE,
    phonenumbers.PhoneNumberType.PREMIUM_RATE,
    phonenumbers.PhoneNumberType.VOIP,
    phonenumbers.PhoneNumberType.UAN,
)


def _separated(rng: random.Random, digits: str) -> str:
    """``digits`` with visual separators (RFC 3966 §5.1.1) and spaces dropped in at random."""
    out = []
    for char in digits:
        if rng.random() < 0.2:
            out.append(rng.choice(["-", ".", " ", "(", ")"]))
        out.append(char)
    return "".join(out)


def _national_significant_numbers(rng: random.Random, region: str) -> list[str]:
    """Example numbers of every type with random tails (mostly valid, some not), plus random
    digit strings of every length around the region's."""
    numbers: list[str] = []
    for number_type in _TYPES:
        example = phonenumbers.example_number_for_type(region, number_type)
        if example is None:
            continue
        nsn = phonenumbers.national_significant_number(example)
        for _ in range(60):
            keep = rng.randint(max(1, len(nsn) - 8), len(nsn))
            tail = "".join(rng.choice(DIGITS) for _ in range(len(nsn) - keep))
            numbers.append(nsn[:keep] + tail)
        numbers.append(nsn[:-1])  # too short
        numbers.append(nsn + rng.choice(DIGITS))  # too long
        numbers.append("0" + nsn)  # leading zero
    for length in range(1, 19):
        for _ in range(8):
            numbers.append("".join(rng.choice(DIGITS) for _ in range(length)))
    return numbers


def _spellings(rng: random.Random, region: str, nsn: str) -> list[str]:
    """The ways a caller, a softswitch or an operator may write ``nsn`` of ``region``."""
    country_code = str(phonenumbers.country_code_for_region(region))
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert metadata is not None
    trunk = metadata.national_prefix or ""
    idd = metadata.preferred_international_prefix or "00"
    national = nsn
    parsed = phonenumbers.PhoneNumber(country_code=int(country_code), national_number=int(nsn))
    with_trunk = "".join(
        c
        for c in phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        if c.isdigit()
    )
    forms = [
        national,
        trunk + national,
        with_trunk,
        "+" + country_code + national,
        "+" + country_code + trunk + national,
        "00" + country_code + national,
        idd + country_code + national,
        "000" + country_code + national,
        country_code + national,
        country_code + trunk + national,
        "+0" + national,
        "+" + national,
    ]
    spelt = [*forms, *(_separated(rng, form) for form in forms)]
    spelt.append(f"tel:{national};phone-context=+{country_code}")
    spelt.append(f"tel:{_separated(rng, trunk + national)};phone-context=+{country_code}")
    spelt.append(f"tel:+{country_code}-{national};user=phone")
    spelt.append(f"{national};phone-context=example.com")
    spelt.append(f"tel:{national};ext=12")
    return spelt


def _privacy_look_alikes(rng: random.Random) -> list[str]:
    texts = []
    for _ in range(40):
        tail = "".join(rng.choice(DIGITS) for _ in range(12))
        for number in ("700" + tail, "700" + tail[:-1], "700" + tail + "1", "170" + tail[:8]):
            texts += [number, "+86" + number, "0086" + number, "86" + number, "+1" + number]
            texts.append(_separated(rng, "+86" + number))
            texts.append(f"tel:{number};phone-context=+86")
    return texts


def _corpus(region: str) -> list[str]:
    rng = random.Random(f"numbers-{region}")
    texts = [*_privacy_look_alikes(rng), "", "+", "+ -", "tel:;phone-context=+86", "abc", "1O"]
    for nsn in _national_significant_numbers(rng, region):
        texts += _spellings(rng, region, nsn)
    return list(dict.fromkeys(texts))


DIGITS = "0123456789"
CORPORA = {region: _corpus(region) for region in EQUIVALENCE_REGIONS}


def test_the_equivalence_corpus_is_large_and_mixed() -> None:
    texts = [text for corpus in CORPORA.values() for text in corpus]
    assert len(texts) > 20_000
    results = [reference_normalise_real(t, "CN", "700", 15) for t in texts[::7]]
    problems = {value.split(" (")[0] for ok, value in results if not ok}
    assert sum(ok for ok, _ in results) > len(results) // 10
    assert {
        "empty number",
        "a privacy number is never a real party number",
        "impossible phone number: wrong length",
        "invalid phone number: not an assigned range",
        "not a phone number",
    } <= problems


@pytest.mark.parametrize("region", EQUIVALENCE_REGIONS)
def test_real_fast_path_equals_the_general_path(region: str) -> None:
    fast = numbers._normalise_real.__wrapped__
    for text in CORPORA[region]:
        for plan_region in {region, "CN"}:
            for prefix, length in (("700", 15), ("170", 11)):
                assert fast(text, plan_region, prefix, length) == (
                    reference_normalise_real(text, plan_region, prefix, length)
                ), (text, plan_region, prefix)


@pytest.mark.parametrize("region", EQUIVALENCE_REGIONS)
def test_parse_plain_builds_what_phonenumbers_parse_builds(region: str) -> None:
    decided = 0
    for text in CORPORA[region]:
        digits = text.translate(numbers._VISUAL_SEPARATORS)
        if not numbers._is_ascii_digits(digits.removeprefix("+")):
            continue
        for plan_region in {region, "CN"}:
            built = numbers._parse_plain(digits, plan_region)
            if built is None:
                continue
            decided += 1
            assert built == phonenumbers.parse(digits, plan_region), (digits, plan_region)
    assert decided > len(CORPORA[region]) // 3  # the fast path decides for many of them


@pytest.mark.parametrize("region", EQUIVALENCE_REGIONS)
def test_privacy_fast_path_equals_the_general_path(region: str) -> None:
    for text in CORPORA[region]:
        for prefix, length in (("700", 15), ("170", 11), ("86", 10)):
            assert numbers._privacy_digits(text, prefix, length, region) == (
                reference_privacy_digits(text, prefix, length, region)
            ), (text, prefix)


@pytest.mark.parametrize("region", EQUIVALENCE_REGIONS)
def test_national_dial_digits_equal_format_number(region: str) -> None:
    fast = numbers._national_dial_digits.__wrapped__
    e164s = {
        value
        for text in CORPORA[region]
        for ok, value in [reference_normalise_real(text, region, "700", 15)]
        if ok
    }
    assert len(e164s) > 300
    for e164 in e164s:
        for plan_region in {region, "CN", "US", "CA"}:
            expected = numbers._national_dial_digits_general(e164, plan_region)
            assert fast(e164, plan_region) == expected, (e164, plan_region)


_NUMBERISH = st.text(alphabet="0123456789+-.() ;=:tel+phone-contextisubx86700", max_size=30)


@given(st.text(max_size=40) | _NUMBERISH, st.sampled_from(EQUIVALENCE_REGIONS))
def test_real_fast_path_equals_the_general_path_on_any_text(text: str, region: str) -> None:
    fast = numbers._normalise_real.__wrapped__
    try:
        expected: object = reference_normalise_real(text, region, "700", 15)
    except Exception as error:
        expected = type(error)
    try:
        got: object = fast(text, region, "700", 15)
    except Exception as error:
        got = type(error)
    assert got == expected
    assert numbers._privacy_digits(text, "700", 15, region) == (
        reference_privacy_digits(text, "700", 15, region)
    )


@given(st.from_regex(r"\+?[0-9]{1,20}", fullmatch=True), st.sampled_from(EQUIVALENCE_REGIONS))
def test_parse_plain_equals_phonenumbers_parse_on_any_digits(digits: str, region: str) -> None:
    built = numbers._parse_plain(digits, region)
    if built is not None:
        assert built == phonenumbers.parse(digits, region)
