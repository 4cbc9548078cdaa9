"""The import path the upstream SplatNLP skills use: ``from splatnlp.mechinterp.skill_helpers import
load_context``."""

from splatnlp.mechinterp.context import MechInterpContext, list_contexts, load_context

__all__ = ["MechInterpContext", "list_contexts", "load_context"]
