"""tinybert.pipeline: the call and output shapes of transformers' pipelines (feature-extraction,
zero-shot-classification, fill-mask) and PaddleNLP Taskflow's information extraction."""

from __future__ import annotations

import pathlib
from typing import Dict

import numpy as np
import pytest

import tinybert


def test_feature_extraction(bge: tinybert.Model) -> None:
    extractor = tinybert.pipeline("feature-extraction", bge)
    one = extractor("今天天气真好。")
    assert isinstance(one, np.ndarray) and one.dtype == np.float32 and one.shape == (512,)
    many = extractor(["今天天气真好。", "明天会下雨吗？"])
    assert many.shape == (2, 512)
    np.testing.assert_allclose(many[0], one, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(many, axis=1), 1.0, atol=1e-5)  # bge: normalised
    raw = tinybert.pipeline("feature-extraction", bge, normalize=False)(["今天天气真好。"])
    assert abs(float(np.linalg.norm(raw[0])) - 1.0) > 1e-3
    np.testing.assert_allclose(raw[0] / np.linalg.norm(raw[0]), one, atol=1e-5)


def test_zero_shot_classification(bge: tinybert.Model) -> None:
    classifier = tinybert.pipeline("zero-shot-classification", bge)
    labels = ["财经", "体育", "科技"]
    out = classifier("今天的足球比赛非常精彩", candidate_labels=labels)
    assert set(out) == {"sequence", "labels", "scores"}
    assert out["sequence"] == "今天的足球比赛非常精彩"
    assert sorted(out["labels"]) == sorted(labels) and out["labels"][0] == "体育"
    assert out["scores"] == sorted(out["scores"], reverse=True)
    assert abs(sum(out["scores"]) - 1.0) < 1e-5  # softmax over the labels
    # positional labels, a list of texts, transformers' option names
    outs = classifier(["今天的足球比赛非常精彩", "股市今天大涨"], labels,
                      hypothesis_template="这是一条{}新闻", multi_label=True)
    assert isinstance(outs, list) and [o["sequence"] for o in outs] == \
        ["今天的足球比赛非常精彩", "股市今天大涨"]
    assert outs[1]["labels"][0] == "财经"
    assert all(0 <= s <= 1 for o in outs for s in o["scores"])
    # the same request through Model.classify gives the same scores
    direct = bge.classify(input="今天的足球比赛非常精彩", labels=labels,
                          template="这是一条{}新闻", multi_label=True)["results"][0]["labels"]
    assert [d["label"] for d in direct] == outs[0]["labels"]
    np.testing.assert_allclose([d["score"] for d in direct], outs[0]["scores"], atol=1e-6)
    # labels as one string, split on "," and "，"; defaults given to pipeline()
    preset = tinybert.pipeline("zero-shot-classification", bge,
                               candidate_labels="财经，体育,科技")
    assert sorted(preset("今天的足球比赛非常精彩")["labels"]) == sorted(labels)
    with pytest.raises(TypeError, match="candidate_labels"):
        classifier("没有标签")


def test_fill_mask(mlm: tinybert.Model) -> None:
    fill = tinybert.pipeline("fill-mask", mlm)
    one = fill("床前明月光，疑是地[MASK]霜。")  # one mask: a list of candidates
    assert isinstance(one, list) and len(one) == 5
    assert set(one[0]) == {"score", "token", "token_str", "sequence"}
    assert isinstance(one[0]["token"], int) and one[0]["token_str"] == "底"
    assert one[0]["sequence"] == "床前明月光，疑是地底霜。"
    assert [c["score"] for c in one] == sorted((c["score"] for c in one), reverse=True)
    two = fill("中国的首都是[MASK][MASK]。", top_k=3)  # several masks: a list per mask
    assert len(two) == 2 and all(len(row) == 3 for row in two)
    assert two[0][0]["sequence"].endswith("[MASK]。") and two[1][0]["sequence"].startswith(
        "中国的首都是[MASK]")
    batch = fill(["床前明月光，疑是地[MASK]霜。", "中国的首都是[MASK][MASK]。"])
    assert len(batch) == 2 and isinstance(batch[0][0], dict) and isinstance(batch[1][0], list)
    assert [c["token"] for c in batch[0]] == [c["token"] for c in one]
    top2 = tinybert.pipeline("fill-mask", mlm, top_k=2)
    assert len(top2("床前明月光，疑是地[MASK]霜。")) == 2


def test_information_extraction(uie_f32: tinybert.Model) -> None:
    text = "张三在北京大学工作，他是一名教授。"
    for task in ("information-extraction", "information_extraction"):
        ie = tinybert.pipeline(task, uie_f32, schema={"人名": ["职位"]})
        out = ie(text)
        assert isinstance(out, list) and len(out) == 1  # Taskflow: a list, one dict per text
        person = out[0]["人名"][0]
        assert (person["text"], person["start"], person["end"]) == ("张三", 0, 2)
        assert 0.5 < person["probability"] <= 1
        job = person["relations"]["职位"][0]
        assert (job["text"], job["start"], job["end"]) == ("教授", 14, 16)
    # Taskflow's API: set_schema, position_prob; several texts; a text without answers
    ie.set_schema(["人名"])
    out = ie([text, "今天天气很好。"])
    assert len(out) == 2 and list(out[0]) == ["人名"] and out[1] == {}
    strict = tinybert.pipeline("information-extraction", uie_f32, schema="人名",
                               position_prob=0.99)
    assert strict(text) == [{}]
    with pytest.raises(TypeError, match="schema"):
        tinybert.pipeline("information-extraction", uie_f32)(text)


def test_pipeline_from_path_and_wrong_model(model_paths: Dict[str, pathlib.Path],
                                            bge: tinybert.Model) -> None:
    extractor = tinybert.pipeline("feature-extraction", model_paths["bge-small-zh-v1.5"],
                                  backend="ref")
    assert extractor.model.backend == "ref" and extractor("你好").shape == (512,)
    assert tinybert.pipeline("feature-extraction", str(model_paths["bge-small-zh-v1.5"])) \
        .model.backend == "int8"
    with pytest.raises(tinybert.Error, match="serves classify, embeddings") as e:
        tinybert.pipeline("fill-mask", bge)
    assert e.value.status == "TB_UNSUPPORTED"
    with pytest.raises(ValueError, match="unknown task"):
        tinybert.pipeline("ner", bge)
    with pytest.raises(TypeError, match="backend"):
        tinybert.pipeline("feature-extraction", bge, backend="f32")
