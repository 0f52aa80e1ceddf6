"""Fixtures of the Python package's tests (CTest test "python", python/CMakeLists.txt).

Environment (CTest sets it; by hand:
  PYTHONPATH=build/python /usr/bin/python3 -m pytest tests/python):
  TINYBERT_SHARED_DIR  ../shared (the models: bge-small-zh-v1.5, demo-mlm, demo-uie; the tests
                       that need them skip without, test_tiny.py's run on tests/data/tiny)
  TINYBERT_CLI         the tinybert CLI, for the comparisons (those tests skip without it)
  TINYBERT_BUILD_DIR   the build tree, for the installation test
  TINYBERT_CMAKE       the cmake that configured it
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Dict

import pytest

import tinybert

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("TINYBERT_SHARED_DIR", REPO.parent / "shared"))
MODELS = ("bge-small-zh-v1.5", "demo-mlm", "demo-uie")
TINY = REPO / "tests" / "data" / "tiny"  # random-weight models in the repository


def shared_model_dir(name: str) -> pathlib.Path:
    folder = SHARED / "models" / name
    if not (folder / "config.json").is_file():
        pytest.skip(f"shared model folder {folder} not found "
                    "(set TINYBERT_SHARED_DIR to the folder holding models/)")
    return folder


def reference(name: str) -> Dict[str, Any]:
    with open(shared_model_dir(name) / "reference_outputs.json", encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, pathlib.Path]:
    """The three shared models converted with tinybert.convert, once per session."""
    out = tmp_path_factory.mktemp("models")
    paths = {}
    for name in MODELS:
        paths[name] = out / f"{name}.tbw"
        report = tinybert.convert(shared_model_dir(name), paths[name])
        assert report["path"] == str(paths[name])
    return paths


@pytest.fixture(scope="session")
def tiny_paths(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, pathlib.Path]:
    """tests/data/tiny's models converted (always there: the tests that need no ../shared)."""
    out = tmp_path_factory.mktemp("tiny")
    paths = {}
    for name in ("tiny-bert", "tiny-mlm", "tiny-nli", "tiny-uie"):
        paths[name] = out / f"{name}.tbw"
        tinybert.convert(TINY / name, paths[name])
    return paths


@pytest.fixture(scope="session")
def bge(model_paths: Dict[str, pathlib.Path]) -> tinybert.Model:
    return tinybert.Model(model_paths["bge-small-zh-v1.5"])  # int8, the default


@pytest.fixture(scope="session")
def bge_ref(model_paths: Dict[str, pathlib.Path]) -> tinybert.Model:
    return tinybert.Model(model_paths["bge-small-zh-v1.5"], backend="ref")


@pytest.fixture(scope="session")
def bge_f32(model_paths: Dict[str, pathlib.Path]) -> tinybert.Model:
    """oneDNN f32: deterministic, unlike int8 (see test_threads.py), and faster than "ref"."""
    return tinybert.Model(model_paths["bge-small-zh-v1.5"], backend="f32")


@pytest.fixture(scope="session")
def uie_f32(model_paths: Dict[str, pathlib.Path]) -> tinybert.Model:
    return tinybert.Model(model_paths["demo-uie"], backend="f32")


@pytest.fixture(scope="session")
def mlm(model_paths: Dict[str, pathlib.Path]) -> tinybert.Model:
    return tinybert.Model(model_paths["demo-mlm"], backend="ref")


@pytest.fixture(scope="session")
def uie(model_paths: Dict[str, pathlib.Path]) -> tinybert.Model:
    return tinybert.Model(model_paths["demo-uie"], backend="ref")


@pytest.fixture(scope="session")
def cli() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("TINYBERT_CLI", REPO / "build" / "apps" / "tinybert"))
    if not os.access(path, os.X_OK):
        pytest.skip(f"the tinybert CLI is not built at {path} (set TINYBERT_CLI)")
    return path
