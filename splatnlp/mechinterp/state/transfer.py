"""Label transfer: a label for each labelled feature's counterpart in the other model.

For every labelled feature of the source model, the matcher's verdict names its counterparts in
the target model (a larger-side feature's ``parent``, a smaller-side feature's ``children``); each
gets the source's label as a proposal, with the match evidence (correlation, relation, verdict
label and rule). A feature without a counterpart (``novel``, ``unique``, ``dead``) proposes
nothing and is listed as skipped with the reason. Proposals are a dry run until applied; applying
writes each label with its provenance (``from ultra 5127, r = 0.73, equivalent``) and never over
an existing label unless ``overwrite``. When several sources propose a label for one target, the
best-correlated wins and the others are ``superseded``.

The matcher (numpy, scipy; no torch) is imported when a transfer runs, not with this module.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from splatnlp.mechinterp.analysis.match.reports import Relation
from splatnlp.mechinterp.state.records import ModelType, check_model

if TYPE_CHECKING:
    from splatnlp.mechinterp.analysis.match.matcher import FeatureMatcher
    from splatnlp.mechinterp.analysis.match.options import MatchOptions
    from splatnlp.mechinterp.analysis.match.reports import MatchReport
    from splatnlp.mechinterp.context.load import MechInterpContext
    from splatnlp.mechinterp.state.store import ResearchStore

TransferAction = Literal["set", "overwrite", "keep_existing", "unchanged", "superseded"]
TRANSFER_ACTIONS: tuple[str, ...] = ("set", "overwrite", "keep_existing", "unchanged", "superseded")


class LabelProposal(BaseModel):
    """One label proposed for a target feature, from one labelled source feature."""

    model_config = ConfigDict(extra="forbid")

    source_model: ModelType
    source_feature: int = Field(ge=0)
    source_label: str
    """The label being transferred (it becomes ``proposed_label`` verbatim)."""
    source_label_provenance: str | None = None
    """The source label's own provenance when it was itself transferred."""
    target_model: ModelType
    target_feature: int = Field(ge=0)
    proposed_label: str
    current_label: str | None
    """The target's label in the store when the proposal was made (None: unlabelled)."""
    provenance: str
    """What is stored beside the label: ``from ultra 5127, r = 0.73, equivalent`` (source,
    pair correlation, the source's verdict label)."""
    verdict_label: str
    """The source's verdict: ``equivalent``, ``split_child``, ``partial`` (larger side) or
    ``split_parent``, ``equivalent``, ``partial`` (smaller side)."""
    verdict_rule: str
    """The rule that gave the verdict, with the source's numbers."""
    relation: Relation
    """The pair's relation label (``FeatureMatch.relation``)."""
    correlation: float | None
    """The pair's activation correlation, the statistic the verdict's pairs are chosen by."""
    combined_score: float | None
    """The pair's combined score (None when a part of it is undefined)."""
    action: TransferAction
    """``set`` (the target is unlabelled), ``overwrite`` (labelled, and overwrite was asked),
    ``keep_existing`` (labelled; left alone), ``unchanged`` (already this label) or
    ``superseded`` (another source's proposal for the same target is better correlated)."""
    note: str = ""
    """Why the action is not ``set``."""
    applied: bool = False
    """Whether this proposal was written to the store."""


class SkippedLabel(BaseModel):
    """A labelled source feature that proposed nothing, and why."""

    model_config = ConfigDict(extra="forbid")

    source_feature: int
    source_label: str
    reason: str
    verdict_label: str | None = None
    """The verdict (``novel``, ``unique``, ``dead``), or None when the query failed."""


class LabelTransfer(BaseModel):
    """The result of :func:`transfer_labels`: every proposal and every skipped source."""

    model_config = ConfigDict(extra="forbid")

    from_model: ModelType
    to_model: ModelType
    from_context: str
    """Name of the source context."""
    to_context: str
    example_fingerprint: str
    """The example set both contexts were computed on."""
    store: str
    """The research-store file."""
    dry_run: bool
    """True unless ``apply``: nothing was written."""
    overwrite: bool
    n_labelled: int
    """Labelled features of ``from_model`` in the store."""
    n_proposals: int
    n_applied: int
    proposals: list[LabelProposal]
    """In source-feature order, each source's pairs in verdict order."""
    skipped: list[SkippedLabel]
    elapsed_ms: float


def _provenance(model: str, feature: int, correlation: float | None, verdict: str) -> str:
    r = "r n/a" if correlation is None else f"r = {correlation:.2f}"
    return f"from {model} {feature}, {r}, {verdict}"


def _check_contexts(
    source: MechInterpContext, target: MechInterpContext, from_model: str, to_model: str
) -> None:
    """``ValueError`` unless the contexts hold the two named models on one example set."""
    check_model(from_model)
    check_model(to_model)
    if from_model == to_model:
        raise ValueError(
            f"from_model and to_model are both {from_model!r}; a label transfer goes from "
            "'ultra' to 'full' or from 'full' to 'ultra'"
        )
    for ctx, model, role in ((source, from_model, "from"), (target, to_model, "to")):
        if ctx.model_type != model:
            raise ValueError(
                f"context {ctx.name!r} ({str(ctx.path)!r}) holds the {ctx.model_type!r} model, "
                f"not {model!r} (--{role} {model}); pass a {model!r} context"
            )
    if source.fingerprint != target.fingerprint:
        raise ValueError(
            f"contexts {source.name!r} ({str(source.path)!r}, examples {source.fingerprint}) and "
            f"{target.name!r} ({str(target.path)!r}, examples {target.fingerprint}) were computed "
            "on different example sets; a label transfer needs both models' codes on one example "
            "set: build the contexts on the same examples"
        )


def _pair_evidence(
    matcher: FeatureMatcher, report: MatchReport, targets: list[int]
) -> list[tuple[str, float | None]]:
    """Each pair's relation and combined score: from the report's listed matches, else from one
    scoring pass of the source against every target (a split parent's children can run past
    the listed matches)."""
    listed = {m.target_feature: (m.relation, m.combined_score) for m in report.matches}
    if all(t in listed for t in targets):
        return [listed[t] for t in targets]
    scores = matcher.score_all(report.source_feature)
    out = []
    for t in targets:
        score = float(scores["combined_score"][t])
        out.append((str(scores["relation"][t]), score if math.isfinite(score) else None))
    return out


def _decide(
    proposals: list[LabelProposal], current: dict[int, str], overwrite: bool
) -> list[LabelProposal]:
    """Each proposal with its action against the targets' ``current`` labels."""

    def strength(p: LabelProposal) -> float:
        return -2.0 if p.correlation is None else p.correlation  # undefined: below any r

    best: dict[int, LabelProposal] = {}
    for p in proposals:  # best-correlated per target; ties: the lower source id (seen first)
        held = best.get(p.target_feature)
        if held is None or strength(p) > strength(held):
            best[p.target_feature] = p
    out = []
    for p in proposals:
        now = current.get(p.target_feature)
        winner = best[p.target_feature]
        if winner is not p:
            action, note = (
                "superseded",
                (
                    f"{winner.source_model} {winner.source_feature} proposes {winner.proposed_label!r} "
                    f"for {p.target_model} {p.target_feature} with a higher correlation"
                ),
            )
        elif now is None:
            action, note = "set", ""
        elif now == p.proposed_label:
            action, note = (
                "unchanged",
                f"{p.target_model} {p.target_feature} already has this label",
            )
        elif overwrite:
            action, note = "overwrite", f"replaces {now!r}"
        else:
            action, note = (
                "keep_existing",
                (
                    f"{p.target_model} {p.target_feature} is labelled {now!r}; pass overwrite=True "
                    "(--overwrite) to replace it"
                ),
            )
        out.append(p.model_copy(update={"current_label": now, "action": action, "note": note}))
    return out


def transfer_labels(
    store: ResearchStore,
    source_ctx: MechInterpContext,
    target_ctx: MechInterpContext,
    *,
    apply: bool = False,
    overwrite: bool = False,
    from_model: str | None = None,
    to_model: str | None = None,
    options: MatchOptions | None = None,
    n_top_matches: int = 20,
) -> LabelTransfer:
    """Propose (and with ``apply``, write) a label for the counterpart of each labelled feature.

    Parameters
    ----------
    store : ResearchStore
        Where the labels are read and written.
    source_ctx, target_ctx : MechInterpContext
        The labelled model's context and the other model's, computed on one example set
        (``ValueError`` naming both otherwise, and when they hold the same model).
    apply : bool
        Write the ``set`` and ``overwrite`` proposals (one transaction), each with its provenance
        (``FeatureState.label_provenance``) and a ``label_set`` history entry. Default: dry run.
    overwrite : bool
        Replace labels the targets already have (default: keep them; ``keep_existing``).
    from_model, to_model : {"full", "ultra"}, optional
        The models the contexts must hold (default: theirs); ``ValueError`` naming the context
        otherwise.
    options : MatchOptions, optional
        The matcher's options (the verdict is always computed).
    n_top_matches : int
        Matches listed per query; a pair beyond them is scored on its own for its relation.

    Returns a :class:`LabelTransfer`. Labelled features without a counterpart, or whose id the
    source context does not have, are in ``skipped`` with the reason.
    """
    from splatnlp.mechinterp.analysis.match.matcher import FeatureMatcher
    from splatnlp.mechinterp.analysis.match.options import MatchOptions

    t0 = time.perf_counter()
    if isinstance(n_top_matches, bool) or not isinstance(n_top_matches, int) or n_top_matches < 1:
        raise ValueError(f"n_top_matches must be an integer >= 1, got {n_top_matches!r}")
    from_model = source_ctx.model_type if from_model is None else from_model
    to_model = target_ctx.model_type if to_model is None else to_model
    _check_contexts(source_ctx, target_ctx, from_model, to_model)
    labelled = store.labels(from_model)
    options = (options or MatchOptions()).model_copy(update={"verdict": True})
    proposals: list[LabelProposal] = []
    skipped: list[SkippedLabel] = []
    if labelled:
        matcher = FeatureMatcher(source_ctx, target_ctx, options=options)
        reports = matcher.find_matches_many(
            list(labelled), n_top_matches=n_top_matches, decompose=False
        )
        for feature, report in zip(labelled, reports, strict=True):
            label, label_provenance = labelled[feature]
            if not hasattr(report, "verdict"):  # a FeatureError: the id is not in the context
                skipped.append(
                    SkippedLabel(source_feature=feature, source_label=label, reason=report.error)
                )
                continue
            v = report.verdict
            pairs = (
                [(v.parent, v.parent_score)]
                if v.parent is not None
                else list(zip(v.children, v.children_scores, strict=True))
            )
            if not pairs:
                skipped.append(
                    SkippedLabel(
                        source_feature=feature,
                        source_label=label,
                        verdict_label=v.label,
                        reason=f"no {to_model} counterpart: verdict {v.label} ({v.rule})",
                    )
                )
                continue
            evidence = _pair_evidence(matcher, report, [t for t, _ in pairs])
            for (target, r), (relation, score) in zip(pairs, evidence, strict=True):
                proposals.append(
                    LabelProposal(
                        source_model=from_model,
                        source_feature=feature,
                        source_label=label,
                        source_label_provenance=label_provenance,
                        target_model=to_model,
                        target_feature=target,
                        proposed_label=label,
                        current_label=None,
                        provenance=_provenance(from_model, feature, r, v.label),
                        verdict_label=v.label,
                        verdict_rule=v.rule,
                        relation=relation,
                        correlation=r,
                        combined_score=score,
                        action="set",
                    )
                )
    current = {f: lab for f, (lab, _) in store.labels(to_model).items()}
    proposals = _decide(proposals, current, overwrite)
    if apply and proposals:
        with store.transaction():
            # Decided again under the write lock: another writer may have labelled a target since.
            current = {f: lab for f, (lab, _) in store.labels(to_model).items()}
            proposals = _decide(proposals, current, overwrite)
            for i, p in enumerate(proposals):
                if p.action in ("set", "overwrite"):
                    store.manager(p.target_feature, to_model).set_label(
                        p.proposed_label, provenance=p.provenance
                    )
                    proposals[i] = p.model_copy(update={"applied": True})
    return LabelTransfer(
        from_model=from_model,
        to_model=to_model,
        from_context=source_ctx.name,
        to_context=target_ctx.name,
        example_fingerprint=source_ctx.fingerprint,
        store=str(store.path),
        dry_run=not apply,
        overwrite=overwrite,
        n_labelled=len(labelled),
        n_proposals=len(proposals),
        n_applied=sum(p.applied for p in proposals),
        proposals=proposals,
        skipped=skipped,
        elapsed_ms=(time.perf_counter() - t0) * 1000,
    )


__all__ = [
    "TRANSFER_ACTIONS",
    "LabelProposal",
    "LabelTransfer",
    "SkippedLabel",
    "TransferAction",
    "transfer_labels",
]
