"""Exactness against the shared models' reference outputs (../shared/models/*/SOURCE.txt), on the
plain fp32 reference backend ("ref"), through the Python API."""

from __future__ import annotations

import numpy as np

import tinybert
from conftest import reference


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_bge_cls_vectors_match_fp32_reference(bge_ref: tinybert.Model) -> None:
    ref = reference("bge-small-zh-v1.5")
    sentences = [entry["sentence"] for entry in ref["entries"]]
    want = np.array([entry["cls_fp32_activations"] for entry in ref["entries"]], dtype=np.float64)
    got = bge_ref.embed(sentences, normalize=False)  # the CLS vector before normalisation
    assert got.shape == (13, 512) and got.dtype == np.float32
    cosine = cosines(got, want)
    assert cosine.min() >= 0.99999, cosine
    assert np.abs(got - want).max() <= 1e-3
    # normalised (bge's default): the same direction at unit length
    unit = bge_ref.embed(sentences)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(unit, got / np.linalg.norm(got, axis=1, keepdims=True), atol=1e-6)


def test_bge_tokens_match_reference(bge_ref: tinybert.Model) -> None:
    for entry in reference("bge-small-zh-v1.5")["entries"]:
        encoding = bge_ref.tokenize(entry["sentence"])
        assert encoding["input_ids"] == entry["input_ids"]
        assert encoding["token_type_ids"] == entry["token_type_ids"]
        assert encoding["tokens"] == entry["tokens"]
        assert encoding["attention_mask"] == [1] * len(entry["input_ids"])


def test_int8_backend_is_close_to_reference(bge: tinybert.Model) -> None:
    ref = reference("bge-small-zh-v1.5")
    want = np.array([entry["cls_fp32_activations"] for entry in ref["entries"]])
    got = bge.embed([entry["sentence"] for entry in ref["entries"]], normalize=False)
    cosine = cosines(got, want)
    assert cosine.min() >= 0.99  # int8 activations (README: 0.995)


def test_demo_mlm_top5_matches_reference(mlm: tinybert.Model) -> None:
    cases = reference("demo-mlm")["cases"]
    response = mlm.fill_mask(input=[case["text"] for case in cases], top_k=5)
    worst, masks = 0.0, 0
    for case, result in zip(cases, response["results"], strict=True):
        assert result["text"] == case["text"]
        assert len(result["masks"]) == len(case["masks"])
        for got, want in zip(result["masks"], case["masks"]):
            masks += 1
            assert got["token_index"] == want["position"]
            for k, (g, w) in enumerate(zip(got["candidates"], want["top5"], strict=True)):
                worst = max(worst, abs(g["probability"] - w["prob"]))
                if g["id"] != w["id"]:  # only where two neighbours tie within 1e-4
                    top = want["top5"]
                    assert any(abs(w["prob"] - top[j]["prob"]) < 1e-4
                               for j in (k - 1, k + 1) if 0 <= j < 5), (case["text"], k)
                else:
                    assert g["token"] == w["token"]
    assert masks == 20
    assert worst < 1e-4


def test_demo_uie_spans_match_reference(uie: tinybert.Model) -> None:
    cases = reference("demo-uie")["cases"]
    assert len(cases) == 14
    for case in cases:
        result = uie.extract(input=case["text"], schema=case["prompt"])["results"][0]
        got = sorted(result.get(case["prompt"], []), key=lambda s: (s["start"], s["end"]))
        want = sorted(case["spans"], key=lambda s: (s["start"], s["end"]))
        assert [(s["text"], s["start"], s["end"]) for s in got] == \
            [(s["text"], s["start"], s["end"]) for s in want], case["text"]
        for g, w in zip(got, want):
            assert abs(g["probability"] - w["probability"]) < 1e-4
            assert case["text"][g["start"]:g["end"]] == g["text"]
