"""BLAS threads out of the compiled kernels' way during a query.

OpenBLAS (numpy's and scipy's each have their own pool) keeps its worker threads spinning for
a while after every threaded call (2**28 cycles by default, ~0.1 s) instead of sleeping. A
matcher query interleaves small BLAS calls (decoder cosines, the decomposition's least squares)
with numba's parallel passes, so on a 2-core machine the spinning threads took the cores the
compiled pass needed: measured at real scale on 2026-12-03, the compiled Ultra->Full query's
pass ran 2.2x slower (12 against 5.4 ms) than with ``OPENBLAS_NUM_THREADS=1``. A query's BLAS
calls are a few milliseconds at most, so they run on one thread instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache, wraps
from typing import Any, TypeVar

__all__ = ["one_blas_thread"]

F = TypeVar("F", bound=Callable[..., Any])


@cache
def _controller(scipy_blas_loaded: bool):
    # A controller knows the BLAS libraries loaded when it was made (building one scans them:
    # ~1.2 ms, too slow per query). scipy's own OpenBLAS loads with scipy.linalg, which a query
    # imports only when it needs it, so there is one controller before and one after.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def one_blas_thread(fn: F) -> F:
    """Run ``fn`` with every loaded BLAS library limited to one thread (restored after; ~20 µs).

    The limit is process-wide (threadpoolctl sets the libraries' own thread counts): queries
    run from several Python threads at once share it, and the first to finish restores it."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _controller("scipy.linalg" in sys.modules).limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
