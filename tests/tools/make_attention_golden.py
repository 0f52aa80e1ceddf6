#!/usr/bin/env python3
"""Golden for fill-mask attribution: last-layer attention of demo-mlm, averaged over heads.

Runs the plain-tensor PyTorch forward of ../shared/models/tools/mlm_reference.py (stored fp16
weights upcast to fp32, one sentence per run, no padding, token_type_ids 0) and records, for
every [MASK] position, the row of the last layer's attention probabilities averaged over the
heads (one weight per key token, [CLS] and [SEP] included).

Usage: /usr/bin/python3 tests/tools/make_attention_golden.py [--shared ../shared] [--out FILE]
Writes tests/data/fill_mask_attention_golden.json by default.
"""
import argparse
import json
import math
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

TEXTS = [
    "中国的首都是[MASK][MASK]。",
    "床前明月光，疑是地[MASK]霜。",
    "我昨天用python写了100行代码，感觉很[MASK]。",
]


@torch.no_grad()
def last_layer_attention(ref, input_ids):
    """mlm_reference.MLMRef.logits up to the last layer's attention probabilities [heads, n, n]."""
    W = ref.W
    ids = torch.tensor(input_ids, dtype=torch.long)
    n = ids.shape[0]
    x = (W["bert.embeddings.word_embeddings.weight"][ids]
         + W["bert.embeddings.position_embeddings.weight"][torch.arange(n)]
         + W["bert.embeddings.token_type_embeddings.weight"][torch.zeros(n, dtype=torch.long)])
    x = ref.ln(x, "bert.embeddings.LayerNorm")
    dh = ref.H // ref.nh
    probs = None
    for layer in range(ref.L):
        p = f"bert.encoder.layer.{layer}."
        q = ref.lin(x, p + "attention.self.query").view(n, ref.nh, dh).transpose(0, 1)
        k = ref.lin(x, p + "attention.self.key").view(n, ref.nh, dh).transpose(0, 1)
        v = ref.lin(x, p + "attention.self.value").view(n, ref.nh, dh).transpose(0, 1)
        probs = torch.softmax((q @ k.transpose(1, 2)) / math.sqrt(dh), dim=-1)
        ctx = (probs @ v).transpose(0, 1).reshape(n, ref.H)
        x = ref.ln(ref.lin(ctx, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = ref.gelu(ref.lin(x, p + "intermediate.dense"))
        x = ref.ln(ref.lin(h, p + "output.dense") + x, p + "output.LayerNorm")
    return probs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "fill_mask_attention_golden.json"))
    args = ap.parse_args()
    tools = os.path.join(args.shared, "models", "tools")
    sys.path.insert(0, tools)
    import bert_tokenize  # noqa: E402
    import mlm_reference  # noqa: E402

    torch.set_num_threads(1)
    model_dir = os.path.join(args.shared, "models", "demo-mlm")
    cfg = json.load(open(os.path.join(model_dir, "config.json"), encoding="utf-8"))
    tcfg = json.load(open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8"))
    tok = bert_tokenize.BertTokenizer(os.path.join(model_dir, "vocab.txt"),
                                      do_lower_case=bool(tcfg.get("do_lower_case", True)))
    W, _ = mlm_reference.load_weights(model_dir)
    ref = mlm_reference.MLMRef(W, cfg)
    mask_id = tok.vocab["[MASK]"]
    cases = []
    for text in TEXTS:
        tokens, ids, _ = tok.encode(text, max_length=512)
        mean = last_layer_attention(ref, ids).mean(dim=0)  # [n, n], averaged over heads
        masks = [{"position": i, "attention": [round(float(w), 8) for w in mean[i]]}
                 for i, t in enumerate(ids) if t == mask_id]
        cases.append({"text": text, "tokens": tokens, "input_ids": ids, "masks": masks})
    out = {
        "what": "demo-mlm last-layer attention probabilities averaged over the 8 heads, row of each [MASK]",
        "how": "tests/tools/make_attention_golden.py (forward of shared/models/tools/mlm_reference.py, fp32)",
        "cases": cases,
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(len(cases), "cases ->", args.out)


if __name__ == "__main__":
    main()
