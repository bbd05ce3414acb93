"""``mlgrid demo`` against a real server: the five ML events, and where to see them."""

from __future__ import annotations

import uuid

from tests.support.cli_runner import Cli, plain
from tests.support.server import ServerProcess

FIVE = (
    "Microsoft.MachineLearningServices.RunCompleted",
    "Microsoft.MachineLearningServices.RunStatusChanged",
    "Microsoft.MachineLearningServices.ModelRegistered",
    "Microsoft.MachineLearningServices.ModelDeployed",
    "Microsoft.MachineLearningServices.DatasetDriftDetected",
)


def test_demo_produces_the_five_events_and_the_viewer_receives_them(sqlite_server: ServerProcess) -> None:
    workspace = "demo" + uuid.uuid4().hex[:8]
    result = Cli(sqlite_server).run("demo", "--workspace", workspace, "--wait", "60")
    output = plain(result.stdout)
    assert "skipped" not in output, output
    for event_type in FIVE:
        assert event_type.rsplit(".", 1)[-1] in output
    assert f"/ui/viewer/systemTopics/{workspace}/ui-viewer" in output
    assert f"/ui/workspaces/{workspace}/datadrifts/breast-cancer-drift" in output

    with sqlite_server.client() as client:
        events = client.get(f"/systemTopics/{workspace}/events", params={"top": 1000}).json()["value"]
        assert {e["eventType"] for e in events} == set(FIVE)
        failed = [e for e in events if e["eventType"].endswith("RunStatusChanged")]
        assert [e["data"]["RunStatus"] for e in failed] == ["failed"]
        # The UI's viewer subscription holds every one of them until the viewer reads it.
        received = client.post(
            f"/workspaces/{workspace}/eventsubscriptions/ui-viewer:receive",
            params={"maxEvents": 100, "maxWaitTime": 5},
        ).json()["value"]
        assert {r["event"]["type"] for r in received} == set(FIVE)
        assert len(received) == len(events)
