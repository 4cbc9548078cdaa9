"""The upstream skill document's Python blocks run verbatim against the demo contexts.

The reference copy lives in ``shared/reference/`` beside the repository (as in CI). The blocks
are also kept here, verbatim, so the test runs without it; when the reference is present the
copies must equal it.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

REFERENCE = (
    Path(__file__).resolve().parents[3]
    / ".."
    / "shared"
    / "reference"
    / "upstream-crossmodel-matcher-skill.md"
)

BLOCKS = (
    """from splatnlp.mechinterp.analysis import FeatureMatcher
from splatnlp.mechinterp.skill_helpers import load_context

# Load source context (the model with your known feature)
source_ctx = load_context("ultra")

# Initialize matcher (automatically loads target model)
matcher = FeatureMatcher(source_ctx)

# Find matches for an Ultra feature in the Full model
report = matcher.find_matches(
    source_feature=18712,
    n_candidates=500,  # How many Full features to check
    n_top_matches=10   # How many matches to return
)

# View results
print(f"Searched {report.n_candidates_tested} candidates")
print(f"Best correlation: {report.best_correlation:.3f}")
for match in report.matches:
    print(f"\\nFull feature {match.target_feature}:")
    print(f"  Token overlap: {match.top_token_overlap:.3f}")
    print(f"  Shared tokens: {match.shared_top_tokens[:5]}")
    print(f"  Notes: {match.notes}")
""",
    """# Compare two specific features in detail
comparison = matcher.compare_features(
    source_fid=18712,  # Ultra feature
    target_fid=1024,   # Full feature
)
print(f"Jaccard similarity: {comparison['jaccard_similarity']:.3f}")
print(f"Shared tokens: {comparison['shared_tokens'][:10]}")
print(f"Ultra-only tokens: {comparison['source_only_tokens'][:10]}")
print(f"Full-only tokens: {comparison['target_only_tokens'][:10]}")
""",
    """# Example: A Full model feature that might be polysemantic
full_ctx = load_context("full")
matcher = FeatureMatcher(full_ctx)  # Source = Full

# Find what Ultra features correspond to Full feature 512
report = matcher.find_matches(source_feature=512)

# If multiple Ultra features match, the Full feature may be polysemantic
if len([m for m in report.matches if m.combined_score > 0.1]) > 3:
    print("Full feature 512 appears to be polysemantic")
    print("Ultra decomposition:")
    for m in report.matches[:5]:
        print(f"  Ultra {m.target_feature}: {m.shared_top_tokens[:3]}")
""",
)


def reference_blocks(text: str) -> list[str]:
    """The bodies of the ```python blocks of a Markdown document, in order."""
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_copies_equal_the_reference() -> None:
    if not REFERENCE.is_file():
        pytest.skip(f"no reference document at {REFERENCE}; the copies in this file are used")
    assert reference_blocks(REFERENCE.read_text()) == list(BLOCKS)


def test_upstream_blocks_run_verbatim(demo_contexts: Path) -> None:
    blocks = reference_blocks(REFERENCE.read_text()) if REFERENCE.is_file() else list(BLOCKS)
    assert len(blocks) == 3
    namespace: dict = {"__name__": "upstream_skill"}
    outputs = []
    for block in blocks:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "upstream-crossmodel-matcher-skill.md", "exec"), namespace)
        outputs.append(out.getvalue())
        if len(outputs) == 1:
            # Ultra -> Full, the target found beside the source.
            report = namespace["report"]
            assert (report.source_model, report.target_model) == ("ultra", "full")
            assert namespace["matcher"].target_ctx.path == demo_contexts / "full"
            assert report.n_candidates_tested == 500 and len(report.matches) == 10
    first, second, third = outputs
    assert first.startswith("Searched 500 candidates\nBest correlation: ")
    assert first.count("\nFull feature ") == 10 and "Token overlap: " in first
    assert second.startswith("Jaccard similarity: ") and "Ultra-only tokens: " in second
    # The third block goes Full -> Ultra; whether it calls 512 polysemantic depends on the data.
    report = namespace["report"]
    assert (report.source_model, report.target_model) == ("full", "ultra")
    assert report.source_feature == 512 and report.n_candidates_tested == 24576
    polysemantic = len([m for m in report.matches if m.combined_score > 0.1]) > 3
    assert ("Full feature 512 appears to be polysemantic" in third) == polysemantic
    assert third.count("  Ultra ") == (5 if polysemantic else 0)
