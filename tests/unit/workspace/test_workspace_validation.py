"""Parsing workspace request bodies: every rejection names its field (SPEC §12)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mlgrid.errors import InvalidField
from mlgrid.workspace import validation as v


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/etc/passwd",
        "..",
        "../x",
        "a/../b",
        "a/./b",
        "./a",
        "a//b",
        "a/",
        "a\\b",
        "a\x00b",
        "a\nb",
        "x" * 1025,
    ],
)
def test_unsafe_artifact_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidField) as info:
        v.check_artifact_path(path)
    assert info.value.field_name == "path"


@pytest.mark.parametrize(
    "path", ["model.pkl", "outputs/model.pkl", "a/b/c d.txt", "logs/job.log", "..hidden", "a.."]
)
def test_safe_artifact_paths_pass_unchanged(path: str) -> None:
    assert v.check_artifact_path(path) == path


def test_properties_must_be_strings() -> None:
    with pytest.raises(InvalidField) as info:
        v.parse_properties({"ok": "1", "bad": 2})
    assert info.value.field_name == "properties.bad"


def test_tags_merge_like_json_merge_patch() -> None:
    assert v.merge_tags({"a": 1, "b": 2}, {"b": None, "c": {"x": 1}}) == {"a": 1, "c": {"x": 1}}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metrics": []}, "metrics"),
        ({"metrics": [{"name": "", "value": 1}]}, "metrics[0].name"),
        ({"metrics": [{"name": "a", "value": True}]}, "metrics[0].value"),
        ({"metrics": [{"name": "a", "value": 1, "step": 1.5}]}, "metrics[0].step"),
        ({"metrics": [{"name": "a", "value": 1, "time": "yesterday"}]}, "metrics[0].time"),
        ({"metrics": [{"name": "a", "value": 1, "unit": "s"}]}, "metrics[0].unit"),
        ({"other": 1}, "other"),
    ],
)
def test_bad_metrics_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as info:
        v.parse_metrics(body)
    assert info.value.field_name == field


def test_metrics_keep_exact_values() -> None:
    parsed = v.parse_metrics({"metrics": [{"name": "a", "value": Decimal("0.30000000000000001"), "step": 2}]})
    assert parsed[0].value == Decimal("0.30000000000000001")
    assert parsed[0].step == 2


def test_run_creation_defaults_and_refuses_terminal_statuses() -> None:
    assert v.parse_run_create(None) == v.RunCreate()
    assert v.parse_run_create({"status": "queued"}).status == "Queued"
    with pytest.raises(InvalidField) as info:
        v.parse_run_create({"status": "Completed"})
    assert info.value.field_name == "status"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"properties": {"resourceGroup": 5}}, "properties.resourceGroup"),
        ({"properties": {"runStatusChangedEvents": "some"}}, "properties.runStatusChangedEvents"),
        ({"properties": {"other": 1}}, "properties.other"),
        ({"sku": {}}, "sku"),
    ],
)
def test_bad_workspace_bodies_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as info:
        v.parse_workspace_body(body)
    assert info.value.field_name == field


def test_workspace_mode_is_case_insensitive() -> None:
    assert v.parse_workspace_body({"properties": {"runStatusChangedEvents": "ALL"}}) == (None, "all")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "command"),
        ({"command": "true", "workingDirectory": "rel"}, "workingDirectory"),
        ({"command": "true", "environment": {"1X": "a"}}, "environment.1X"),
        ({"command": "true", "environment": {"MLGRID_URL": "a"}}, "environment.MLGRID_URL"),
        ({"command": "true", "network": "bridge"}, "network"),
        ({"command": "true", "resources": []}, "resources"),
        ({"command": "true", "resources": {"gpus": 1}}, "resources.gpus"),
        ({"command": "true", "resources": {"memoryMb": 0}}, "resources.memoryMb"),
        ({"command": "true", "resources": {"memoryMb": "512Mi"}}, "resources.memoryMb"),
        ({"command": "true", "resources": {"cpuSeconds": True}}, "resources.cpuSeconds"),
    ],
)
def test_bad_jobs_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidField) as info:
        v.parse_job(body)
    assert info.value.field_name == field


def test_model_sources_are_required_and_safe() -> None:
    with pytest.raises(InvalidField) as info:
        v.parse_model_metadata({"runId": "r"}, allow_source=True)
    assert info.value.field_name == "artifactPath"
    with pytest.raises(InvalidField):
        v.parse_model_metadata({"runId": "r", "artifactPath": "/abs"}, allow_source=True)
    _, run_id, path = v.parse_model_metadata(
        {"runId": "r", "artifactPath": "outputs/dir/"}, allow_source=True
    )
    assert (run_id, path) == ("r", "outputs/dir")


def test_a_job_may_choose_its_network_and_lower_its_limits() -> None:
    resources = {"memoryMb": 512, "cpuSeconds": 60}
    spec = v.parse_job({"command": "true", "network": "host", "resources": resources})
    assert (spec.network, spec.memory_mb, spec.cpu_seconds) == ("host", 512, 60)
    default = v.parse_job({"command": "true"})
    assert (default.network, default.memory_mb, default.cpu_seconds) == (None, None, None)


def test_null_tags_and_properties_are_none_and_a_null_patch_is_refused() -> None:
    # The schemas say "object or null" for tags and properties, and a PATCH body is an object.
    assert v.parse_run_create({"tags": None, "properties": None}) == v.RunCreate()
    with pytest.raises(InvalidField) as caught:
        v.parse_run_change(None)
    assert caught.value.field_name == "body"
    assert v.parse_run_change({}) == v.RunChange()


def test_whole_number_steps_and_limits_are_integers() -> None:
    metric = {"name": "m", "value": 1, "step": Decimal("2.0")}
    assert v.parse_metrics({"metrics": [metric]})[0].step == 2
    assert v.parse_job_resources({"memoryMb": Decimal("512.0")}) == (512, None)
    with pytest.raises(InvalidField) as caught:
        v.parse_metrics({"metrics": [{**metric, "step": Decimal("2.5")}]})
    assert caught.value.field_name == "metrics[0].step"
