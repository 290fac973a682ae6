"""Applying the policy's rules, entitlements and PII constraint (:mod:`routing.rules`) to a
batch: per row, the tier, why, and the tiers every constraint allows.

:mod:`~routing.enforcement.decisions` (:func:`~routing.enforcement.decisions.apply_rules`) runs
the steps; :mod:`~routing.enforcement.conditions` finds which rules match which rows,
:mod:`~routing.enforcement.steps` what each step allows and where a row moves, and
:mod:`~routing.enforcement.reasons` writes the ``route_reason`` and ``rejected_reason``.
"""
