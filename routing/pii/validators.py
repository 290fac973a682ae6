"""The validators of PII matches: is a regex match a real card number, SSN, IBAN, phone
number, public IP address or e-mail address? Each sees the whole match, context included
(see :mod:`routing.pii`), and rejects the candidate when that context shows it is part of
something longer."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping

Validator = Callable[[str], bool]


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isascii() and ch.isdigit())


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_CARD_SHAPE = re.compile(r"\d{13,19}|\d{4}(?:-\d{1,6}){2,4}|\d{4}(?: \d{1,6}){2,4}")
# Issuer prefixes (IIN ranges) and the lengths their cards have: (low, high, lengths).
_CARD_BRANDS: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (300, 305, frozenset(range(14, 20))),  # Diners Club
    (36, 36, frozenset(range(14, 20))),
    (38, 39, frozenset(range(16, 20))),
    (3528, 3589, frozenset(range(16, 20))),  # JCB
    (6011, 6011, frozenset(range(16, 20))),  # Discover
    (644, 649, frozenset(range(16, 20))),
    (65, 65, frozenset(range(16, 20))),
    (62, 62, frozenset(range(16, 20))),  # UnionPay
    (50, 50, frozenset(range(13, 20))),  # Maestro
    (56, 58, frozenset(range(13, 20))),
    (639, 639, frozenset(range(13, 20))),
    (67, 67, frozenset(range(13, 20))),
)


def card_brand_ok(digits: str) -> bool:
    """Does a known card issuer use this prefix with this length?"""
    for low, high, lengths in _CARD_BRANDS:
        prefix = int(digits[: len(str(low))])
        if low <= prefix <= high and len(digits) in lengths:
            return True
    return False


def valid_card(match: str) -> bool:
    """13–19 digits (compact, or grouped with one kind of separator), a known issuer
    prefix with a length that issuer uses (an 18-digit number starting with 4 is an id,
    not a Visa card), not one repeated digit, and a valid Luhn checksum."""
    return any(_card_ok(core) for core in _cores(match))


def _card_ok(core: str) -> bool:
    if not _CARD_SHAPE.fullmatch(core):
        return False
    digits = _digits(core)
    return len(set(digits)) > 1 and card_brand_ok(digits) and luhn_ok(digits)


_SSN_SHAPE = re.compile(r"(\d{3})([- ])(\d{2})\2(\d{4})")
_SSN_ADVERTISED = frozenset({"078051120", "219099999"})


def valid_ssn(match: str) -> bool:
    """AAA-GG-SSSS (dashes or spaces, the same twice); area not 000, 666 or 900–999,
    group not 00, serial not 0000; not a famous advertising / example number."""
    return any(_ssn_ok(core) for core in _cores(match))


def _ssn_ok(core: str) -> bool:
    shape = _SSN_SHAPE.fullmatch(core)
    if shape is None:
        return False
    area, _, group, serial = shape.groups()
    return (
        area not in ("000", "666")
        and area[0] != "9"
        and group != "00"
        and serial != "0000"
        and area + group + serial not in _SSN_ADVERTISED
    )


# IBAN lengths by country (SWIFT IBAN registry); other country codes need 15–34 characters.
IBAN_LENGTHS: Mapping[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27,
    "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28,
    "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def iban_ok(iban: str) -> bool:
    """A compact IBAN (no spaces): country, check digits, length, mod-97 = 1."""
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", iban):
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    if iban[2:4] in ("00", "01", "99"):
        return False
    rotated = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rotated)) % 97 == 1


def valid_iban(match: str) -> bool:
    """An IBAN written compact or in groups of four; a trailing word that the pattern
    swallowed (``… 3000 THEN``) is tolerated by trying shorter group prefixes."""
    groups = match.split()
    return any(iban_ok("".join(groups[:k])) for k in range(len(groups), 0, -1))


_PHONE_INTL = re.compile(r"\+[1-9][0-9 .()\-]*[0-9]")
_PHONE_NANP = re.compile(
    r"(?:\+?1[ .-]?)?(?:\(([2-9]\d{2})\)[ .-]?|([2-9]\d{2})([ .-]))([2-9]\d{2})([ .-])(\d{4})"
)


def valid_phone(match: str) -> bool:
    """International (``+`` and 8–15 digits, E.164) or a North American number with
    separators (``(555) 234-5678``, ``555-234-5678``, ``555.234.5678``, ``+1 …``);
    area and exchange codes start with 2–9, are not N11 service codes, and the area's
    middle digit is not 9. Bare digit runs, and three space-separated groups without
    ``(…)`` or ``+1``, are never phones."""
    return any(_phone_ok(core) for core in _cores(match))


def _phone_ok(core: str) -> bool:
    nanp = _PHONE_NANP.fullmatch(core)
    if nanp is not None:
        area, exchange = nanp.group(1) or nanp.group(2), nanp.group(4)
        sep1, sep2 = nanp.group(3), nanp.group(5)
        return (
            area[1] != "9"  # NANP area codes: [2-9][0-8][0-9]
            and "11" not in (area[1:], exchange[1:])  # N11 codes are service numbers
            and (sep1 is None or sep1 == sep2 or {sep1, sep2} == {" ", "-"})
            # "200 300 4000" is a list of numbers unless a "(…)" or "+1" says otherwise
            and not (sep1 == sep2 == " " and not core.startswith(("+", "1")))
        )
    if _PHONE_INTL.fullmatch(core) is None or "  " in core:
        return False
    digits = _digits(core)
    groups = re.findall(r"[0-9]+", core)
    single = sum(len(g) == 1 for g in groups[1:])
    return 8 <= len(digits) <= 15 and single <= 1 and len(set(digits[1:])) > 1


_IPV4_SHAPE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


def valid_ipv4(match: str) -> bool:
    """A public IPv4 address: four octets 0–255 without leading zeros, globally routable
    (not private 10/8, 172.16/12, 192.168/16, loopback, link-local, CGNAT, documentation
    or reserved ranges: those identify no one outside a network); not preceded by a
    numbering word (``v``, ``version``, ``section``, ``§`` …), not followed by ``.N``."""
    return any(_ipv4_ok(core, public=True) for core in _cores(match))


def valid_ipv4_any(match: str) -> bool:
    """:func:`valid_ipv4` without the public-address requirement."""
    return any(_ipv4_ok(core, public=False) for core in _cores(match))


def _ipv4_ok(core: str, *, public: bool) -> bool:
    shape = _IPV4_SHAPE.fullmatch(core)
    if shape is None:
        return False
    octets = shape.groups()
    if any(int(o) > 255 or (o != "0" and o.startswith("0")) for o in octets) or octets[0] == "0":
        return False
    return not public or ipaddress.IPv4Address(core).is_global


def valid_ipv6(match: str) -> bool:
    """A public IPv6 address (``ipaddress``: valid and globally routable, so not
    loopback, link-local ``fe80::``, unique-local ``fc00::/7`` or documentation
    ``2001:db8::``), with at least two non-empty groups and a digit — so C++ scopes such
    as ``ab::cd`` are not flagged."""
    return any(_ipv6_ok(core, public=True) for core in _cores(match))


def valid_ipv6_any(match: str) -> bool:
    """:func:`valid_ipv6` without the public-address requirement."""
    return any(_ipv6_ok(core, public=False) for core in _cores(match))


def _ipv6_ok(core: str, *, public: bool) -> bool:
    core = core.rstrip(".").split("%", 1)[0]
    try:
        address = ipaddress.IPv6Address(core)
    except ValueError:
        return False
    groups = [g for g in core.split(":") if g]
    plausible = len(groups) >= 3 or (len(groups) == 2 and any(ch.isdigit() for ch in core))
    return plausible and (not public or address.is_global)


_SSH_REMOTE_USERS = frozenset({"git", "hg", "svn"})


def valid_email(match: str) -> bool:
    """An address, but not an SSH remote user (``git@github.com:org/repo.git``)."""
    return match.split("@", 1)[0].lower() not in _SSH_REMOTE_USERS


# Words after which a dotted number is a version or a section, not an address.
NUMBERING = (
    r"v|ver\.?|version|release|rev\.?|section|sec\.?|§|chapter|figure|fig\.?|table|clause"
    r"|article|art\.?"
)
# The first character of a match is a guard (not part of the PII) unless it can start one.
_GUARD = re.compile(r"[^A-Za-z0-9_+:]")
_BAD_PREFIX = re.compile(rf"(?i)(?:{NUMBERING})\s*\d")


def _cores(match: str) -> list[str]:
    """The possible cores of a guarded match: without the guard character in front
    (and, for ``(``, which may open ``(555) …``, with it too); a core with a version word
    in front (``version 1.2.3.4``) is dropped. A captured continuation behind (``.5``,
    ``-2``) needs no check here: it makes the validator's full-match shape fail."""
    if not match or not _GUARD.match(match[0]):
        cores = [match]
    else:
        cores = [match[1:], match] if match[0] == "(" else [match[1:]]
    return [c for c in cores if not _BAD_PREFIX.match(c)]


# Validators an extra (policy-defined) kind may name.
VALIDATORS: Mapping[str, Validator] = {
    "luhn": lambda m: 12 <= len(_digits(m)) <= 19 and luhn_ok(_digits(m)),
    "iban": valid_iban,
    "card": valid_card,
    "ssn": valid_ssn,
    "phone": valid_phone,
    "ipv4": valid_ipv4,
    "ipv4_any": valid_ipv4_any,
    "ipv6": valid_ipv6,
    "ipv6_any": valid_ipv6_any,
    "email": valid_email,
}
