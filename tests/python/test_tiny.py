"""The whole API on tests/data/tiny's random-weight models: runs without ../shared. Shapes and
consistency only (the weights are random); exactness is test_reference.py's."""

from __future__ import annotations

import os
import pathlib
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Dict

import numpy as np
import pytest

import tinybert

TEXTS = ["我是中国人", "北京天气好。", "the quick fox",
         "今天天气好，我是北京人。", "中国的天气"]


def test_model_properties(tiny_paths: Dict[str, pathlib.Path]) -> None:
    model = tinybert.Model(tiny_paths["tiny-bert"], backend="ref")
    assert model.architecture == "encoder" and model.backend == "ref"
    assert model.dimension == model.hidden_size == 32 and model.max_length == 64
    assert model.name == "tiny-bert" and model.path == str(tiny_paths["tiny-bert"])
    assert set(model.tasks) == {"classify", "embeddings"}
    assert model.info["layers"] == 2
    mlm = tinybert.Model(tiny_paths["tiny-mlm"])
    assert (mlm.architecture, mlm.dimension, mlm.tasks) == ("masked_lm", 0, ["fill-mask"])
    assert tinybert.__version__.count(".") == 2


def test_tokenize(tiny_paths: Dict[str, pathlib.Path]) -> None:
    model = tinybert.Model(tiny_paths["tiny-bert"])
    single = model.tokenize("我是中国人")
    assert single["tokens"] == ["[CLS]", "我", "是", "中", "国", "人", "[SEP]"]
    assert single["input_ids"][0] == 101 and single["input_ids"][-1] == 102
    assert single["offsets"][1:3] == [(0, 1), (1, 2)] and single["offsets"][0] == (0, 0)
    assert single["attention_mask"] == [1] * 7 and single["token_type_ids"] == [0] * 7
    pair = model.tokenize("我是", "中国人", max_length=6)
    assert pair["tokens"] == ["[CLS]", "我", "[SEP]", "中", "国", "[SEP]"]  # longest-first
    assert pair["token_type_ids"] == [0, 0, 0, 1, 1, 1]
    assert pair["sequence_ids"] == [None, 0, None, 1, 1, None]
    with pytest.raises(ValueError):
        model.tokenize("我", max_length=0)


def test_embed_shapes(tiny_paths: Dict[str, pathlib.Path]) -> None:
    model = tinybert.Model(tiny_paths["tiny-bert"], backend="f32")
    batch = model.embed(TEXTS)
    assert batch.shape == (5, 32) and batch.dtype == np.float32
    assert batch.flags["C_CONTIGUOUS"] and not batch.flags["OWNDATA"]  # the engine's buffer
    np.testing.assert_allclose(model.embed(TEXTS[1]), batch[1], atol=1e-5)
    np.testing.assert_allclose(model.embed(tuple(TEXTS)), batch, atol=1e-6)
    np.testing.assert_allclose(model.embed(iter(TEXTS)), batch, atol=1e-6)
    assert model.embed([]).shape == (0, 32)
    view = model.embed(TEXTS)[2:4]
    del model  # the arrays keep their buffer; the model goes
    assert view.shape == (2, 32) and np.isfinite(view).all()


def test_pipelines_on_tiny_models(tiny_paths: Dict[str, pathlib.Path]) -> None:
    features = tinybert.pipeline("feature-extraction", tiny_paths["tiny-bert"])
    assert features("我是中国人").shape == (32,) and features(TEXTS).shape == (5, 32)
    # an NLI cross-encoder (entailment is label 1 of tiny-nli) in the same pipeline shape
    nli = tinybert.pipeline("zero-shot-classification", tiny_paths["tiny-nli"])
    out = nli(TEXTS[:2], candidate_labels=["天气", "中国"], hypothesis_template="{}")
    assert [sorted(o["labels"]) for o in out] == [["中国", "天气"]] * 2
    assert all(o["scores"] == sorted(o["scores"], reverse=True) for o in out)
    fill = tinybert.pipeline("fill-mask", tiny_paths["tiny-mlm"], top_k=3)
    one = fill("我是[MASK]国人")
    assert len(one) == 3 and set(one[0]) == {"score", "token", "token_str", "sequence"}
    assert one[0]["sequence"] == "我是" + one[0]["token_str"].removeprefix("##") + "国人"
    assert [len(x) for x in fill("[MASK]是[MASK]国人")] == [3, 3]
    ie = tinybert.pipeline("information-extraction", tiny_paths["tiny-uie"], schema=["人"])
    out = ie(TEXTS)
    assert len(out) == 5 and all(isinstance(o, dict) for o in out)


def test_threads_on_tiny_model(tiny_paths: Dict[str, pathlib.Path]) -> None:
    model = tinybert.Model(tiny_paths["tiny-bert"], backend="f32")
    serial = {t: model.embed(t) for t in TEXTS}
    barrier = threading.Barrier(8)

    def work(t: int) -> float:
        barrier.wait()
        worst = 0.0
        for r in range(20):
            texts = [TEXTS[(t + r + k) % 5] for k in range(1 + r % 3)]
            got = model.embed(texts)
            worst = max(worst, max(float(np.abs(g - serial[x]).max())
                                   for g, x in zip(got, texts)))
        return worst

    with ThreadPoolExecutor(8) as pool:
        assert max(pool.map(work, range(8))) <= 1e-5


def test_model_from_before_fork_refuses_instead_of_hanging(
        tiny_paths: Dict[str, pathlib.Path]) -> None:
    model = tinybert.Model(tiny_paths["tiny-bert"], backend="f32")
    model.embed("我")
    pid = os.fork()
    if pid == 0:  # the child: the model's scheduler thread stayed in the parent
        try:
            model.embed("我")
            code = 1
        except tinybert.Error as e:
            code = 0 if "fork" in str(e) else 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert model.embed("我").shape == (32,)  # the parent's model still works
