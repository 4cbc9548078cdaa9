"""The numba-compiled loop behind :func:`splatnlp.mechinterp.context.codes.write_codes`.

Imported only when codes are written (a build), never by a query: importing numba costs about a
second.
"""

from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def csc_block(indptr, indices, data, j0, j1, cursor, rows_out, values_out):  # pragma: no cover - compiled
    """Columns ``j0 .. j1 - 1`` of a CSR matrix as CSC arrays, in one pass over its entries:
    ``cursor[j - j0]`` is where column ``j``'s next entry goes (its start in ``rows_out`` /
    ``values_out`` on entry); rows come in ascending order, so each column's rows are sorted."""
    for r in range(len(indptr) - 1):
        for k in range(indptr[r], indptr[r + 1]):
            c = indices[k]
            if j0 <= c < j1:
                p = cursor[c - j0]
                rows_out[p] = r
                values_out[p] = data[k]
                cursor[c - j0] = p + 1
