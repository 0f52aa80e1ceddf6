"""The Python package and the C++ CLI (build/apps/tinybert) give the same results: same engine,
same backend, so vectors and probabilities agree to float rounding (1e-5). oneDNN f32 and the
fp32 reference: int8 varies a little from run to run (test_threads.py)."""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any, Dict, List

import numpy as np

import tinybert

TEXTS = ["今天天气真好。", "北京是中国的首都，也是一座历史悠久的城市。",
         "The quick brown fox 跳过了懒狗。"]


def run_cli(cli: pathlib.Path, *args: str) -> Any:
    done = subprocess.run([str(cli), *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_embed_matches_cli(cli: pathlib.Path, model_paths: Dict[str, pathlib.Path],
                           bge_f32: tinybert.Model) -> None:
    path = str(model_paths["bge-small-zh-v1.5"])
    want = np.array(run_cli(cli, "embed", "--backend", "f32", "--model", path, *TEXTS)
                    ["embeddings"])
    np.testing.assert_allclose(bge_f32.embed(TEXTS), want, atol=1e-5)
    want_raw = np.array(run_cli(cli, "embed", "--backend", "f32", "--no-normalize", "--model",
                                path, *TEXTS)["embeddings"])
    np.testing.assert_allclose(bge_f32.embed(TEXTS, normalize=False), want_raw, atol=1e-4,
                               rtol=1e-5)


def test_classify_matches_cli(cli: pathlib.Path, model_paths: Dict[str, pathlib.Path],
                              bge_f32: tinybert.Model) -> None:
    path = str(model_paths["bge-small-zh-v1.5"])
    want = run_cli(cli, "classify", "--backend", "f32", "--model", path, "--labels",
                   "体育,财经,科技,旅游", *TEXTS)["results"]
    got = bge_f32.classify(input=TEXTS, labels=["体育", "财经", "科技", "旅游"])["results"]
    assert len(got) == len(want) == 3
    for g, w in zip(got, want):
        assert [x["label"] for x in g["labels"]] == [x["label"] for x in w["labels"]]
        np.testing.assert_allclose([x["score"] for x in g["labels"]],
                                   [x["score"] for x in w["labels"]], atol=1e-5)


def candidates(results: List[Dict[str, Any]]) -> List[List[List[Any]]]:
    return [[[c["token"] for c in m["candidates"]] for m in r["masks"]] for r in results]


def test_fill_mask_matches_cli(cli: pathlib.Path, model_paths: Dict[str, pathlib.Path]) -> None:
    texts = ["中国的首都是[MASK][MASK]。", "床前明月光，疑是地[MASK]霜。"]
    # `tinybert fill-mask` refuses --backend (the other commands take it): its default, f32
    want = run_cli(cli, "fill-mask", "--top-k", "5", "--model", str(model_paths["demo-mlm"]),
                   *texts)
    with tinybert.Model(model_paths["demo-mlm"], backend="f32") as mlm:
        got = mlm.fill_mask(input=texts, top_k=5)["results"]
    assert candidates(got) == candidates(want)
    for g, w in zip(got, want):
        for gm, wm in zip(g["masks"], w["masks"]):
            assert (gm["start"], gm["end"]) == (wm["start"], wm["end"])
            np.testing.assert_allclose([c["probability"] for c in gm["candidates"]],
                                       [c["probability"] for c in wm["candidates"]], atol=1e-5)


def spans(value: Any) -> Any:
    """An extraction without its probabilities (compared separately)."""
    if isinstance(value, dict):
        return {k: spans(v) for k, v in value.items() if k != "probability"}
    if isinstance(value, list):
        return [spans(v) for v in value]
    return value


def probabilities(value: Any) -> List[float]:
    if isinstance(value, dict):
        return [p for k, v in value.items()
                for p in ([v] if k == "probability" else probabilities(v))]
    if isinstance(value, list):
        return [p for v in value for p in probabilities(v)]
    return []


def test_extract_matches_cli(cli: pathlib.Path, model_paths: Dict[str, pathlib.Path],
                             uie: tinybert.Model) -> None:
    texts = ["张三在北京大学工作，他是一名教授。",
             "2024年3月，李四加入了腾讯公司担任工程师。"]
    schema = ["公司", {"人名": ["职位", "公司"]}]
    want = run_cli(cli, "extract", "--backend", "ref", "--model", str(model_paths["demo-uie"]),
                   "--schema", json.dumps(schema, ensure_ascii=False), *texts)
    got = uie.extract(input=texts, schema=schema)["results"]
    assert spans(got) == spans(want)
    assert any(probabilities(got))
    np.testing.assert_allclose(probabilities(got), probabilities(want), atol=1e-5)
    # the pipeline returns the same in Taskflow's shape
    ie = tinybert.pipeline("information-extraction", uie, schema=schema)
    assert spans(ie(texts)) == spans(want)
