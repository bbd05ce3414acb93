"""``SubscriptionIndex``: correct answers, immediate updates, and only plausible candidates."""

from __future__ import annotations

from typing import Any

import pytest

from mlgrid.filters import EventFilter, FilterCompiler, SubscriptionIndex, parse_filter

EG = "EventGridSchema"
CE = "CloudEventSchemaV1_0"
REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
DEPLOYED = "Microsoft.MachineLearningServices.ModelDeployed"


def event(event_type: str = REGISTERED, subject: str = "models/churn:3", **data: Any) -> dict[str, Any]:
    return {
        "id": "e",
        "topic": "/t",
        "subject": subject,
        "eventType": event_type,
        "eventTime": "2024-01-01T00:00:00Z",
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def flt(**raw: Any) -> EventFilter:
    return parse_filter(raw, input_schema=EG)


@pytest.fixture
def index() -> SubscriptionIndex:
    ix = SubscriptionIndex()
    ix.upsert("ws1", "all", EventFilter(), EG)
    ix.upsert("ws1", "registered", flt(includedEventTypes=[REGISTERED]), EG)
    ix.upsert("ws1", "registered-lower", flt(includedEventTypes=[REGISTERED.lower()]), EG)
    ix.upsert("ws1", "deployed", flt(includedEventTypes=[DEPLOYED]), EG)
    ix.upsert("ws1", "both", flt(includedEventTypes=[DEPLOYED, REGISTERED]), EG)
    ix.upsert("ws1", "all-keyword", flt(includedEventTypes=["ALL"]), EG)
    ix.upsert("ws1", "models", flt(subjectBeginsWith="MODELS/"), EG)
    ix.upsert("ws1", "models-cs", flt(subjectBeginsWith="Models/", isSubjectCaseSensitive=True), EG)
    ix.upsert("ws1", "churn", flt(subjectBeginsWith="models/churn:"), EG)
    ix.upsert("ws1", "churn-3", flt(subjectBeginsWith="models/churn:", subjectEndsWith=":3"), EG)
    ix.upsert("ws1", "endpoints", flt(subjectBeginsWith="endpoints/"), EG)
    ix.upsert(
        "ws1",
        "tagged",
        flt(
            advancedFilters=[{"operatorType": "StringIn", "key": "data.ModelTags.key1", "values": ["value1"]}]
        ),
        EG,
    )
    ix.upsert("ws2", "other-topic", EventFilter(), EG)
    return ix


def test_match(index: SubscriptionIndex) -> None:
    assert index.match("ws1", event(), EG) == [
        "all",
        "all-keyword",
        "both",
        "churn",
        "churn-3",
        "models",
        "registered",
        "registered-lower",
    ]
    assert index.match("ws1", event(DEPLOYED, "endpoints/svc"), EG) == [
        "all",
        "all-keyword",
        "both",
        "deployed",
        "endpoints",
    ]
    assert index.match("ws1", event(subject="Models/x:1"), EG) == [
        "all",
        "all-keyword",
        "both",
        "models",
        "models-cs",
        "registered",
        "registered-lower",
    ]
    assert "tagged" in index.match("ws1", event(ModelTags={"KEY1": "Value1"}), EG)
    assert index.match("WS1", event(subject=""), EG) == [
        "all",
        "all-keyword",
        "both",
        "registered",
        "registered-lower",
    ]
    assert index.match("nope", event(), EG) == []


def test_candidates_exclude_other_types_and_prefixes(index: SubscriptionIndex) -> None:
    candidates = index.candidates("ws1", event(subject="models/other:1"), EG)
    assert "deployed" not in candidates
    assert "endpoints" not in candidates
    assert "churn" not in candidates
    assert "models-cs" not in candidates
    assert "tagged" in candidates  # must evaluate its advanced filter


def test_updates_take_effect_immediately(index: SubscriptionIndex) -> None:
    index.upsert("ws1", "churn", flt(subjectBeginsWith="endpoints/"), EG)
    assert "churn" not in index.match("ws1", event(), EG)
    assert "churn" in index.match("ws1", event(DEPLOYED, "endpoints/a"), EG)
    assert index.remove("ws1", "churn")
    assert not index.remove("ws1", "churn")
    assert "churn" not in index.match("ws1", event(DEPLOYED, "endpoints/a"), EG)
    index.upsert("ws1", "both", flt(includedEventTypes=[DEPLOYED]), EG)
    assert "both" not in index.match("ws1", event(), EG)
    assert index.subscription_ids("ws1").count("both") == 1


def test_remove_cleans_up_and_remove_topic(index: SubscriptionIndex) -> None:
    for subscription_id in index.subscription_ids("ws1"):
        assert index.remove("ws1", subscription_id)
    assert index.match("ws1", event(), EG) == []
    assert index.subscription_ids("ws1") == []
    assert len(index) == 1
    index.remove_topic("WS2")
    assert len(index) == 0
    assert index.match("ws2", event(), EG) == []
    index.remove_topic("never-existed")


def test_prefix_lengths_shrink_when_removed() -> None:
    ix = SubscriptionIndex()
    ix.upsert("t", "a", flt(subjectBeginsWith="abc"), EG)
    ix.upsert("t", "b", flt(subjectBeginsWith="abd"), EG)
    ix.upsert("t", "c", flt(subjectBeginsWith="ab"), EG)
    assert ix.match("t", event(subject="abcz"), EG) == ["a", "c"]
    ix.remove("t", "a")
    assert ix.match("t", event(subject="abcz"), EG) == ["c"]
    ix.remove("t", "c")
    assert ix.match("t", event(subject="abdz"), EG) == ["b"]
    assert ix.match("t", event(subject="a"), EG) == []


def test_cloud_events_use_type_and_optional_subject() -> None:
    ix = SubscriptionIndex()
    ce_filter = parse_filter({"includedEventTypes": ["org.example.promoted"]}, input_schema=CE)
    ix.upsert("t", "typed", ce_filter, CE)
    ix.upsert("t", "prefixed", parse_filter({"subjectBeginsWith": "a"}, input_schema=CE), CE)
    ix.upsert("t", "any", EventFilter(), CE)
    ce = {"specversion": "1.0", "id": "1", "source": "/s", "type": "Org.Example.Promoted", "data": {}}
    assert ix.match("t", ce, CE) == ["any", "typed"]
    assert ix.match("t", {**ce, "subject": "abc"}, CE) == ["any", "prefixed", "typed"]


def test_get_filter_returns_what_was_indexed(index: SubscriptionIndex) -> None:
    assert index.get_filter("ws1", "all") == EventFilter()
    assert index.get_filter("ws1", "missing") is None
    assert index.get_filter("missing", "all") is None


def test_unknown_schema_does_not_replace_existing() -> None:
    ix = SubscriptionIndex()
    ix.upsert("t", "s", EventFilter(), EG)
    with pytest.raises(ValueError):
        ix.upsert("t", "s", flt(includedEventTypes=[DEPLOYED]), "Avro")
    assert ix.match("t", event(), EG) == ["s"]


def test_many_subscriptions_only_a_few_candidates() -> None:
    ix = SubscriptionIndex()
    types = [f"Type{i}" for i in range(50)]
    for i in range(5000):
        raw = {"includedEventTypes": [types[i % 50]], "subjectBeginsWith": f"models/m{i}:"}
        ix.upsert("t", f"s{i:05d}", flt(**raw), EG)
    probe = event("TYPE7", "models/m1007:2")
    assert ix.candidates("t", probe, EG) == ["s01007"]
    assert ix.match("t", probe, EG) == ["s01007"]


def test_a_compiler_shares_identical_advanced_filters_and_compilers_share_nothing() -> None:
    """Sharing is what keeps matching flat as subscriptions grow; it lives in the compiler (the
    index owns one), not in module state, so two indexes never see each other's filters."""
    raw = {"advancedFilters": [{"operatorType": "NumberGreaterThan", "key": "data.score", "value": 0.5}]}
    first = parse_filter(raw, input_schema="EventGridSchema")
    same = parse_filter(raw, input_schema="EventGridSchema")
    compiler = FilterCompiler()
    shared = compiler.parts(first).advanced
    assert shared is not None and compiler.parts(same).advanced is shared
    other = FilterCompiler().parts(same).advanced
    assert other is not None and other is not shared
    event = {"eventType": "X", "subject": "s", "data": {"score": 0.75}}
    assert shared(event) and other(event)
    assert not shared({"eventType": "X", "subject": "s", "data": {"score": 0.25}})
