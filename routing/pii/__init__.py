"""PII detection over a whole batch of prompts, vectorised with polars regexes.

Each kind of PII is a :class:`~routing.pii.kinds.PiiKind`: a name, a regex (polars / Rust
``regex`` syntax: no look-around, no back-references), an optional validator and an
optional cheap prefilter regex. :class:`~routing.pii.detector.PiiDetector` works in three
passes:

1. one ``str.contains`` of the union of all prefilters over the whole batch (Rust, no
   Python per row) — on the shared corpus it keeps ~1.3 % of the prompts;
2. per kind, on those rows only: its prefilter, then its full pattern;
3. for kinds with a validator, the matches (``str.extract_all``) of the rows left are
   checked in Python — Luhn and issuer prefix for cards, mod-97 and country length for
   IBANs, the SSA rules for SSNs, octets and public ranges for IPv4, ``ipaddress`` for
   IPv6, numbering-plan rules for phones.

A pattern cannot look around, so a pattern that must not match inside a longer number
includes its *context* in the match instead: a guard character in front (start of text
or a character that cannot continue a number), a numbering word in front
(``version 1.2.3.4``, ``section 3.2.1.4``) and, after the core, a continuation such as
``.5`` (``1.2.3.4.5``) or ``-0`` (``123-45-6789-0``). The validator sees the whole match
and rejects the candidate when such context was captured.

Built-in kinds (:data:`~routing.pii.kinds.BUILTIN_KINDS`): ``card``, ``email``, ``iban``, ``ipv4``,
``ipv6``, ``phone``, ``ssn``; IP addresses count only when public (a private or loopback
address identifies no one). Extra kinds come from the policy as regexes, optionally with
a named validator from :data:`~routing.pii.validators.VALIDATORS` (``ipv4_any`` flags
every address).

:meth:`~routing.pii.detector.PiiDetector.detect` returns, per prompt, the sorted unique kind
names found.

The modules: :mod:`~routing.pii.kinds` (a kind, the built-in patterns),
:mod:`~routing.pii.validators` (the checks of each match) and :mod:`~routing.pii.detector`.
"""
