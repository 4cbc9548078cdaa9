"""Pure numerics over codes: pair sums and pair metrics (``pairs``), the streamed all-pairs pass
(``streamed``), top-token sets (``tokens``), linear CKA (``cka``), input validation (``inputs``),
per-feature arrays of a context (``features``) and the light result models (``results``).

Nothing here imports the matcher, the alignment, the CLI or the store.
"""
