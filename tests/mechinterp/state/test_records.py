"""Tests of splatnlp/mechinterp/state/records.py: JSON round trips and UTC times."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from state_builders import _link

from splatnlp.mechinterp.state.records import CrossModelLink, Evidence, FeatureState, Hypothesis


def test_records_round_trip_through_json() -> None:
    h = Hypothesis(id="h001", statement="fires on SSU stacks", confidence=0.7, tags=["mobility"])
    e = Evidence(id="e012", experiment_id="x", summary="s", strength="weak", key_metrics={"r": 0.5})
    link = CrossModelLink.model_validate(_link())
    state = FeatureState(
        feature_id=3, model_type="full", hypotheses=[h], evidence=[e], links=[link]
    )
    for record in (h, e, link, state):
        assert type(record).model_validate_json(record.model_dump_json()) == record
    assert link.recorded_at.tzinfo == timezone.utc


def test_link_times_are_converted_to_utc_and_naive_times_refused() -> None:
    plus2 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    link = CrossModelLink.model_validate(_link(recorded_at=plus2))
    assert link.recorded_at == datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    assert link.recorded_at.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError, match=r"recorded_at\n.*timezone"):
        CrossModelLink.model_validate(_link(recorded_at=datetime(2024, 5, 1)))
