"""All features at once: dictionary alignment of two contexts (``dictionary``:
:func:`align_contexts`), its report models (``report``) and saved tables (``tables``), plots
(``plots``), and FeatureMatch's ``align_features`` contract (``featurematch``)."""
