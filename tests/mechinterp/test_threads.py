"""splatnlp/mechinterp/_threads.py: BLAS limited to one thread inside a query, restored after."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from splatnlp.mechinterp._threads import one_blas_thread


def _blas_threads() -> dict[str, int]:
    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_blas_runs_on_one_thread_inside_and_as_before_after() -> None:
    import scipy.linalg  # noqa: F401 - scipy's own BLAS, loaded: both libraries are limited

    before = _blas_threads()
    assert before, "numpy's BLAS is always loaded"

    @one_blas_thread
    def query(x: np.ndarray) -> tuple[dict[str, int], float]:
        return _blas_threads(), float((x @ x.T).sum())

    inside, value = query(np.ones((64, 8)))
    assert inside.keys() == before.keys() and set(inside.values()) == {1}
    assert value == 64 * 64 * 8
    assert _blas_threads() == before


def test_limits_are_restored_when_the_query_raises() -> None:
    before = _blas_threads()

    @one_blas_thread
    def failing() -> None:
        raise ValueError("feature 99999 is out of range")

    with pytest.raises(ValueError, match="out of range"):
        failing()
    assert _blas_threads() == before
