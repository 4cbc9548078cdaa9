"""One feature against every feature of the other model: :class:`FeatureMatcher` (``matcher``),
its options (``options``), the NNLS decomposition (``decompose``) and the pydantic reports
(``reports``)."""
