"""``mlgrid ml endpoint deploy|show|list|score|logs|delete`` against a real server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from tests.support.cli_runner import Cli
from tests.support.deployments import ECHO_SCRIPT, SETOSA, iris_classifier, pickle_bytes
from tests.support.server import ServerProcess


def endpoint(verb: str, workspace: str, name: str, *options: str) -> tuple[str, ...]:
    """The arguments of ``mlgrid ml endpoint <verb> -w <workspace> -n <name> [options]``."""
    return ("ml", "endpoint", verb, "-w", workspace, "-n", name, *options)


@pytest.fixture(scope="module")
def cli(sqlite_server: ServerProcess) -> Cli:
    return Cli(sqlite_server)


@pytest.fixture(scope="module")
def workspace(cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = "w" + uuid.uuid4().hex[:10]
    cli.run("ml", "workspace", "create", "--name", name)
    folder = tmp_path_factory.mktemp("cli-models")
    (folder / "model.pkl").write_bytes(pickle_bytes(iris_classifier()))
    (folder / "label.txt").write_text("from-cli\n")
    cli.run("ml", "model", "register", "-w", name, "--name", "iris", "--path", str(folder / "model.pkl"))
    cli.run("ml", "model", "register", "-w", name, "--name", "label", "--path", str(folder / "label.txt"))
    return name


def test_deploy_score_list_logs_delete(cli: Cli, workspace: str, tmp_path: Path) -> None:
    options = ("--models", "iris:1", "--tags", "team=ml", "--properties", "owner=bob")
    deployed = cli.json(*endpoint("deploy", workspace, "iris-cli", *options))
    assert deployed["properties"]["state"] == "Healthy", deployed["properties"]["error"]
    assert deployed["properties"]["tags"] == {"team": "ml"}
    scored = cli.json(*endpoint("score", workspace, "iris-cli", "--data", json.dumps({"data": [SETOSA]})))
    assert scored == {"predictions": [0]}
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps([SETOSA, SETOSA]))
    assert cli.json(*endpoint("score", workspace, "iris-cli", "--file", str(rows))) == {"predictions": [0, 0]}

    script = tmp_path / "score.py"
    script.write_text(ECHO_SCRIPT)
    scripted = cli.json(
        *endpoint("deploy", workspace, "label-cli", "--models", "label:1", "--entry-script", str(script))
    )
    assert scripted["properties"]["entryScript"]["fileName"] == "score.py"
    answer = cli.json(*endpoint("score", workspace, "label-cli", "--data", "[1]"))
    assert answer["label"] == "from-cli"

    table = cli.run("ml", "endpoint", "list", "-w", workspace, "-o", "table").stdout
    assert "iris-cli" in table and "label-cli" in table and "Healthy" in table
    assert cli.json(*endpoint("show", workspace, "iris-cli"))["name"] == "iris-cli"
    assert "listening on http://127.0.0.1:" in cli.run(*endpoint("logs", workspace, "iris-cli")).stdout

    for name in ("iris-cli", "label-cli"):
        cli.run(*endpoint("delete", workspace, name))
    assert cli.json("ml", "endpoint", "list", "-w", workspace) == []
    missing = cli.run(*endpoint("show", workspace, "iris-cli"), expect=1)
    assert "EndpointNotFound" in missing.stderr


def test_a_failed_deployment_exits_1_with_the_log(cli: Cli, workspace: str, tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text(
        "def init():\n    raise ValueError('model file is corrupt')\ndef run(raw_data):\n    pass\n"
    )
    failed = cli.run(
        *endpoint("deploy", workspace, "broken-cli", "--entry-script", str(script), "-o", "json"), expect=1
    )
    assert json.loads(failed.stdout)["properties"]["state"] == "Failed"
    assert "ValueError: model file is corrupt" in failed.stderr
    no_wait = cli.json(
        *endpoint("deploy", workspace, "broken-cli", "--entry-script", str(script), "--no-wait")
    )
    assert no_wait["properties"]["state"] == "Deploying"
    bad = cli.run(*endpoint("deploy", workspace, "bad-cli", "--models", "nope:1"), expect=1)
    assert "properties.models[0]" in bad.stderr
    unparsable = cli.run(*endpoint("score", workspace, "broken-cli", "--data", "{"), expect=2)
    assert "not JSON" in unparsable.output
