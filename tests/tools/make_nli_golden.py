#!/usr/bin/python3
"""Golden for zero-shot classification in NLI mode on tests/data/tiny/tiny-nli.

Tokenizes (text, hypothesis) pairs with the shared reference tokenizer
(../shared/models/tools/bert_tokenize.py), runs tiny-nli's pytorch_model.bin through the float64
reference modules of tools/make_tiny_models.py (one pair per run, no padding) and applies the
scoring of HuggingFace's ZeroShotClassificationPipeline.postprocess:
  single label: softmax over labels of the entailment logits;
  multi label (or one label): per label softmax([contradiction, entailment])[entailment], where
  contradiction_id = -1 (the last class) if entailment_id == 0 else 0.

Usage: /usr/bin/python3 tests/tools/make_nli_golden.py   (writes tests/data/tiny/tiny-nli/pairs_golden.json)
"""
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "..", "shared", "models", "tools"))

import bert_tokenize  # noqa: E402
import make_tiny_models as tiny  # noqa: E402

FOLDER = os.path.join(ROOT, "tests", "data", "tiny", "tiny-nli")

# Texts and templates built from tiny-nli's vocabulary; the second template is mostly [UNK].
CASES = [
    {"texts": ["北京天气好", "我是中国人。", "the quick fox"], "labels": ["天气", "中国", "人", "python"],
     "template": "{}是好的。"},
    {"texts": ["中国的北京"], "labels": ["北京", "天气好"], "template": "这是一条关于{}的新闻。"},
    {"texts": ["我好", "天气"], "labels": ["好"], "template": "{}"},  # one label: the pipeline's multi-label path
]


def load_model():
    model = tiny.Model(tiny.NVOCAB, 2, 0, 1e-12, ["pooler", "classifier"])
    names = tiny.bert_names("bert.")
    names["classifier.weight"] = "classifier.weight"
    names["classifier.bias"] = "classifier.bias"
    stored = torch.load(os.path.join(FOLDER, "pytorch_model.bin"))
    sd = {canon: stored[hf].numpy() for canon, hf in names.items() if hf in stored}
    return tiny.load(model, sd, torch.float64)


def entailment_id(config):
    for label, index in config["label2id"].items():
        if label.lower().startswith("entail"):
            return index
    raise SystemExit("no entailment label")


def main():
    config = json.load(open(os.path.join(FOLDER, "config.json")))
    entail = entailment_id(config)
    contra = -1 if entail == 0 else 0
    tokenizer = bert_tokenize.BertTokenizer(os.path.join(FOLDER, "vocab.txt"), do_lower_case=False)
    vocab = bert_tokenize.load_vocab(os.path.join(FOLDER, "vocab.txt"))
    ids_of = lambda text: [vocab.get(t, vocab["[UNK]"]) for t in tokenizer.tokenize(text)]
    model = load_model()
    out_cases = []
    for case in CASES:
        pairs, logits = [], []
        for text in case["texts"]:
            row = []
            for label in case["labels"]:
                a, b = ids_of(text), ids_of(case["template"].replace("{}", label))
                ids = [tiny.CLS] + a + [tiny.SEP] + b + [tiny.SEP]
                types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
                with torch.no_grad():
                    out = model(torch.tensor([ids]), torch.tensor([types]), torch.zeros(1, len(ids), dtype=torch.long),
                                torch.ones(1, len(ids)))
                row.append(out["classifier_logits"][0].tolist())
                pairs.append({"input_ids": ids, "token_type_ids": types})
            logits.append(row)
        z = np.array(logits)  # [texts, labels, classes]
        e = np.exp(z[..., entail] - z[..., entail].max(-1, keepdims=True))
        single = e / e.sum(-1, keepdims=True)
        ec = z[..., [contra, entail]]
        ec = np.exp(ec - ec.max(-1, keepdims=True))
        multi = (ec / ec.sum(-1, keepdims=True))[..., 1]
        if len(case["labels"]) == 1:  # the pipeline scores one label as in multi-label mode
            single = multi
        out_cases.append({**case, "pairs": pairs, "logits": logits, "single_label_scores": single.tolist(),
                          "multi_label_scores": multi.tolist()})
    golden = {
        "model": "tiny-nli",
        "reference": "tools/make_tiny_models.py modules, float64, one pair per run; tokens from "
                     "../shared/models/tools/bert_tokenize.py (do_lower_case=False)",
        "entailment_id": entail,
        "contradiction_id": contra,
        "scores": "HF ZeroShotClassificationPipeline.postprocess; scores in label order (not sorted)",
        "cases": out_cases,
    }
    with open(os.path.join(FOLDER, "pairs_golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
