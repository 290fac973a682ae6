"""tests/data.py: a missing shared data folder skips a test, except in CI where it fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import data


def test_present_data_is_returned(tmp_path: Path) -> None:
    assert data.require(tmp_path) == tmp_path


@pytest.mark.parametrize("ci", ["", "false", "0"])
def test_missing_data_skips_outside_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str
) -> None:
    monkeypatch.setenv("CI", ci)
    missing = tmp_path / "shared" / "data" / "prompts" / "corpus.parquet"
    with pytest.raises(pytest.skip.Exception, match="shared data not found") as info:
        data.require(tmp_path, missing)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("ci", ["true", "TRUE", "1"])
def test_missing_data_fails_in_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    missing = tmp_path / "labels"
    with pytest.raises(pytest.fail.Exception, match="CI=true needs it") as info:
        data.require(missing)
    assert str(missing) in str(info.value)


def test_no_ci_variable_is_not_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert not data.in_ci()
