"""Loading deployed models and entry scripts, and scoring with them (scoring process only).

Model files (SPEC §9): ``.pkl``/``.pickle`` load with pickle, ``.joblib`` with joblib, a
directory with an ``MLmodel`` file with ``mlflow.pyfunc`` (when mlflow is installed); an entry
script overrides all of these. The deployed models sit under the model directory as
``<name>/<version>/<files>``; a directory model must hold exactly one loadable file (or an
``MLmodel``) unless an entry script says what to load.

An entry script follows Azure ML: ``init()`` runs once before the process reports healthy and
finds its files through ``AZUREML_MODEL_DIR`` (also ``MLGRID_MODEL_DIR``); ``run(raw_data)``
gets the request body as a string and returns something JSON-serialisable (or bytes/str sent
as they are). Anything ``init()`` raises fails the deployment with the traceback in the log.
"""

from __future__ import annotations

import importlib.util
import pickle
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mlgrid.workspace.scoring import inputs
from mlgrid.workspace.scoring.inputs import InputError

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle"})
JOBLIB_SUFFIXES = frozenset({".joblib"})
MODEL_SUFFIXES = PICKLE_SUFFIXES | JOBLIB_SUFFIXES
MLMODEL_FILE = "MLmodel"


class ModelLoadError(Exception):
    """A deployed model or entry script could not be loaded (the deployment fails)."""


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of the scoring app."""

    status: int
    body: bytes
    content_type: str = "application/json"


def _bad_input(message: str) -> Answer:
    return Answer(400, inputs.error_body("InvalidInput", message))


def _failed(exc: BaseException) -> Answer:
    return Answer(500, inputs.error_body("ScoringFailed", f"{type(exc).__name__}: {exc}"))


# --- models ----------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """One deployed model: its id (``name:version``), what loaded it and the object."""

    model_id: str
    kind: str  # "pickle" | "joblib" | "mlflow"
    source: Path
    model: Any

    @property
    def feature_names(self) -> list[str] | None:
        names = getattr(self.model, "feature_names_in_", None)
        return None if names is None else [str(n) for n in list(names)]

    def predict(self, rows: Any) -> Any:
        if self.kind == "mlflow":
            import pandas as pd

            frame = inputs.frame_or_array(rows, None)
            if not isinstance(frame, pd.DataFrame):
                frame = pd.DataFrame(frame)
            return self.model.predict(frame)
        return self.model.predict(inputs.frame_or_array(rows, self.feature_names))


def _candidate_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)


def _load_mlflow(model_id: str, directory: Path) -> LoadedModel:
    try:
        import mlflow.pyfunc
    except ImportError as exc:
        raise ModelLoadError(
            f"model {model_id} is an MLflow model (it has an {MLMODEL_FILE} file) but mlflow is not "
            "installed in the server's Python environment; install it (pip install 'mlgrid[mlflow]') "
            "or deploy with an entry script"
        ) from exc
    return LoadedModel(model_id, "mlflow", directory, mlflow.pyfunc.load_model(str(directory)))


def load_model(model_id: str, directory: Path) -> LoadedModel:
    """Load the model stored in ``directory`` (``<model-dir>/<name>/<version>``)."""
    if (directory / MLMODEL_FILE).is_file():
        return _load_mlflow(model_id, directory)
    candidates = _candidate_files(directory)
    if not candidates:
        names = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())[:20]
        raise ModelLoadError(
            f"model {model_id} has no file this server can load without an entry script "
            f"(.pkl, .pickle, .joblib or an MLflow directory); its files: {', '.join(names) or 'none'}"
        )
    if len(candidates) > 1:
        listed = ", ".join(str(p.relative_to(directory)) for p in candidates[:20])
        raise ModelLoadError(
            f"model {model_id} has several model files ({listed}); deploy it with an entry script that "
            "says which to load"
        )
    path = candidates[0]
    if path.suffix.lower() in JOBLIB_SUFFIXES:
        import joblib

        kind, model = "joblib", joblib.load(path)
    else:
        with path.open("rb") as handle:
            # The model is a registered artifact of this workspace, deployed by its own users:
            # unpickling it is what deploying a pickled model means.
            kind, model = "pickle", pickle.load(handle)
    if not callable(getattr(model, "predict", None)):
        raise ModelLoadError(
            f"model {model_id} ({path.name}) loaded as a {type(model).__name__}, which has no predict() "
            "method; deploy it with an entry script"
        )
    return LoadedModel(model_id, kind, path, model)


class ModelScorer:
    """Scores with deployed models directly: the first listed unless the body names one."""

    def __init__(self, models: Sequence[LoadedModel]) -> None:
        if not models:
            raise ModelLoadError("no model to score with: deploy a model or give an entry script")
        self.models = list(models)
        self._by_id = {m.model_id.lower(): m for m in self.models}

    def describe(self) -> dict[str, Any]:
        return {"models": [{"id": m.model_id, "format": m.kind} for m in self.models]}

    def score(self, body: bytes) -> Answer:
        try:
            request = inputs.scoring_input(inputs.parse_json(body))
            model = self.models[0]
            if request.model is not None:
                chosen = self._by_id.get(request.model.lower())
                if chosen is None:
                    ids = ", ".join(m.model_id for m in self.models)
                    raise InputError(f"model {request.model!r} is not deployed here; deployed: {ids}")
                model = chosen
            result = model.predict(request.rows)
        except InputError as exc:
            return _bad_input(str(exc))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            # What scikit-learn raises for input of the wrong shape or type.
            return _bad_input(f"the model rejected the input: {type(exc).__name__}: {exc}")
        except Exception as exc:
            traceback.print_exc()
            return _failed(exc)
        return Answer(200, inputs.predictions(result))


# --- entry scripts ---------------------------------------------------------------------------


def _import_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("mlgrid_entry_script", path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"cannot import the entry script {path.name}")
    module = importlib.util.module_from_spec(spec)
    # Its own directory first, so the script can import helper modules shipped next to it.
    sys.path.insert(0, str(path.parent))
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class ScriptScorer:
    """Scores with an entry script's ``run(raw_data)`` after its ``init()``."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ModelLoadError(f"the entry script {path} does not exist")
        module = _import_script(path)
        run = getattr(module, "run", None)
        if not callable(run):
            raise ModelLoadError(f"the entry script {path.name} defines no run(raw_data) function")
        init = getattr(module, "init", None)
        if init is not None:
            if not callable(init):
                raise ModelLoadError(f"the entry script {path.name}: init is not a function")
            init()
        self.path = path
        self._run = run

    def describe(self) -> dict[str, Any]:
        return {"entryScript": self.path.name}

    def score(self, body: bytes) -> Answer:
        try:
            result = self._run(body.decode("utf-8", errors="replace"))
        except Exception as exc:
            traceback.print_exc()
            return _failed(exc)
        if isinstance(result, bytes):
            return Answer(200, result, "application/octet-stream")
        try:
            return Answer(200, inputs.encode(result))
        except TypeError as exc:
            return _failed(TypeError(f"run() returned something that is not JSON: {exc}"))


Scorer = ModelScorer | ScriptScorer


def discover(model_dir: Path) -> list[tuple[str, Path]]:
    """``(name:version, directory)`` of every model under ``model_dir`` (``<name>/<version>``)."""
    found = []
    if model_dir.is_dir():
        for name_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            for version_dir in sorted(p for p in name_dir.iterdir() if p.is_dir() and p.name.isdigit()):
                found.append((f"{name_dir.name}:{version_dir.name}", version_dir))
    return found


def build_scorer(model_dir: Path, model_ids: Sequence[str], entry_script: Path | None) -> Scorer:
    """What the scoring app serves: the entry script if given, else the deployed models."""
    if entry_script is not None:
        return ScriptScorer(entry_script)
    listed = (
        [(model_id, model_dir.joinpath(*model_id.rsplit(":", 1))) for model_id in model_ids]
        if model_ids
        else discover(model_dir)
    )
    return ModelScorer([load_model(model_id, directory) for model_id, directory in listed])
