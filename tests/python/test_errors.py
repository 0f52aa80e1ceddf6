"""Failures raise tinybert.Error with the engine's message, status and location."""

from __future__ import annotations

import pathlib
import pickle
from typing import Dict

import numpy as np
import pytest

import tinybert


def test_error_is_an_exception_with_the_api_fields() -> None:
    assert issubclass(tinybert.Error, Exception)
    with pytest.raises(tinybert.Error) as e:
        tinybert.Model("/nonexistent/model.tbw")
    error = e.value
    assert error.status == "TB_MODEL_ERROR" and error.code == 2
    assert "/nonexistent/model.tbw" in str(error) and "cannot open" in error.message
    assert error.type == "model_error"
    assert error.input_index is None and error.position is None
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.message, copy.status, copy.type) == (error.message, error.status, error.type)


def test_bad_model_file(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.tbw"
    bad.write_bytes(b"not a model at all" * 10)
    with pytest.raises(tinybert.Error) as e:
        tinybert.Model(bad)
    assert e.value.status == "TB_MODEL_ERROR" and str(bad) in str(e.value)


def test_bad_backend(model_paths: Dict[str, pathlib.Path]) -> None:
    with pytest.raises(tinybert.Error, match="unknown backend 'gpu'") as e:
        tinybert.Model(model_paths["bge-small-zh-v1.5"], backend="gpu")
    assert e.value.status == "TB_INVALID_ARGUMENT"


def test_convert_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(tinybert.Error) as e:
        tinybert.convert(tmp_path / "missing", tmp_path / "out.tbw")
    assert e.value.status == "TB_MODEL_ERROR" and "missing" in str(e.value)
    with pytest.raises(tinybert.Error, match="dtype") as e:
        tinybert.convert(tmp_path, tmp_path / "out.tbw", dtype="int4")
    assert e.value.status == "TB_INVALID_ARGUMENT"


def test_unknown_request_field(bge: tinybert.Model) -> None:
    with pytest.raises(tinybert.Error, match="unknown field 'top-k'") as e:
        bge.classify(input="你好", labels=["a", "b"], **{"top-k": 3})
    assert (e.value.status, e.value.type, e.value.http_status) == \
        ("TB_INVALID_REQUEST", "invalid_request", 400)


def test_engine_input_errors_carry_their_location(mlm: tinybert.Model,
                                                  bge: tinybert.Model) -> None:
    with pytest.raises(tinybert.Error, match="MASK") as e:
        mlm.fill_mask(input=["中国的首都是[MASK]。", "没有掩码的句子"])
    assert e.value.input_index == 1 and e.value.status == "TB_INVALID_REQUEST"
    with pytest.raises(tinybert.Error, match="labels") as e:
        bge.classify(input="你好", labels=[])
    with pytest.raises(tinybert.Error, match="threshold") as e:
        bge.classify(input="你好", labels=["a"], threshold=float("nan"))
    assert e.value.status == "TB_INVALID_REQUEST"


def test_lone_surrogates(bge: tinybert.Model, mlm: tinybert.Model) -> None:
    # A Python str can hold "\ud800", UTF-8 cannot: a clear error naming text and character.
    with pytest.raises(tinybert.Error) as e:
        bge.embed(["好", "ab\ud800c"])
    assert e.value.input_index == 1 and e.value.position == 2
    assert "text 2, character 3" in str(e.value) and "U+D800" in str(e.value)
    assert e.value.status == "TB_INVALID_REQUEST"
    with pytest.raises(tinybert.Error, match="U\\+DC80"):
        bge.tokenize("x\udc80")
    with pytest.raises(tinybert.Error, match="text 3, character 1: a lone surrogate") as e:
        mlm.fill_mask(input=["[MASK]", "[MASK]", "\udfff[MASK]"])
    assert (e.value.input_index, e.value.position) == (2, 0)
    with pytest.raises(tinybert.Error, match="'labels\\[1\\]'") as e:
        bge.classify(input="你好", labels=["a", "\ud83d"])
    assert e.value.input_index is None


def test_invalid_utf8_bytes_are_refused_by_the_engine(bge: tinybert.Model) -> None:
    np.testing.assert_allclose(bge.embed([b"\xe4\xbd\xa0\xe5\xa5\xbd"])[0], bge.embed("你好"),
                               atol=1e-6)
    with pytest.raises(tinybert.Error, match="invalid UTF-8") as e:
        bge.embed([b"ok", b"a\xff"])
    assert e.value.input_index == 1 and e.value.status == "TB_INVALID_REQUEST"


def test_nul_characters_are_refused_not_cut(bge: tinybert.Model) -> None:
    with pytest.raises(tinybert.Error, match="NUL") as e:
        bge.embed(["a\x00b"])
    assert e.value.position == 1


def test_wrong_task_for_the_model(bge: tinybert.Model, mlm: tinybert.Model,
                                  uie: tinybert.Model) -> None:
    with pytest.raises(tinybert.Error, match="fill-mask") as e:
        bge.fill_mask(input="[MASK]")
    assert e.value.status == "TB_UNSUPPORTED"
    with pytest.raises(tinybert.Error, match="encoder model; this one is masked_lm") as e:
        mlm.embed(["你好"])
    assert e.value.status == "TB_UNSUPPORTED"
    with pytest.raises(tinybert.Error, match="extract"):
        mlm.extract(input="你好", schema="人名")
    with pytest.raises(tinybert.Error, match="classify"):
        uie.classify(input="你好", labels=["a"])


def test_wrong_python_types(bge: tinybert.Model) -> None:
    with pytest.raises(TypeError):
        bge.embed([1, 2])  # type: ignore[list-item]
    with pytest.raises(tinybert.Error, match="'input\\[0\\]' must be a string"):
        bge.classify(input=[1], labels=["a"])
    # numpy values in a request are sent as numbers
    out = bge.classify(input="你好", labels=["a", "b"], temperature=np.float32(0.05))
    assert len(out["results"]) == 1


def test_closed_model(model_paths: Dict[str, pathlib.Path]) -> None:
    with tinybert.Model(model_paths["bge-small-zh-v1.5"]) as model:
        vector = model.embed("你好")
    assert model.closed and "closed" in repr(model)
    with pytest.raises(tinybert.Error, match="closed"):
        model.embed("你好")
    assert vector.shape == (512,)  # results outlive the model
    model.close()  # twice is fine
