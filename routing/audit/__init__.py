"""The audit trail: one hash-chained record per routing decision (pure computation).

Every result part (``results/part-c<chunk>-<part>.parquet``) has one audit object
(``_audit/part-c<chunk>-<part>.parquet``, one string column ``line``): one JSON record
per row of the part, in the part's row order. Each record carries ``prev``, the hash of
the record before it (the first record's ``prev`` is the part's *genesis*, derived from
the job id, chunk and part), and ``hash``, the SHA-256 of the record's own bytes up to
``hash``. The finalizer anchors every chain — its record count and last hash — in
``manifest.json``, with a hash over all anchors; :func:`~routing.audit.verify.check_chain`
then finds any edited, deleted, inserted, reordered, truncated or swapped record and names
the first.

Line format (``batch-router-audit/v1``): one JSON object, UTF-8, its members exactly the
fields of :data:`~routing.audit.chain.FIELDS` in that order (``prev`` last) then ``hash``.
The hash covers the line's own bytes: it is the SHA-256 of the line cut just before
``,"hash":"`` with ``}`` appended, so any change to a byte of a record — a value, a space,
a key order — breaks it; the verifier never re-encodes. A line that does not parse, has
missing or reordered members, or a ``hash`` member not at its end is reported as altered.
(JSON lines in a zstd Parquet column: a tenth of the bytes of a ``.jsonl`` object, exact
bytes kept, and the anchor in the footer, so the finalizer reads footers only.)

No prompt text is recorded: ``fingerprint`` is the SHA-256 of the normalised system
prompt and prompt (whitespace collapsed and stripped as in :mod:`routing.dedupe`, joined
with a unit separator). It is unsalted, so whoever holds a candidate text can confirm it
was in the job: treat audit objects as confidential as the job's metadata.

The modules: :mod:`~routing.audit.chain` (the records, building a part's chain, its anchor
in the footer and the manifest) and :mod:`~routing.audit.verify` (checking a chain).
"""
