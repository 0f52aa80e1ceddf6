#!/usr/bin/python3
"""Check that tests/data/modelscope/*/golden.json agree with the checkpoints on disk.

    /usr/bin/python3 tools/modelscope/check_goldens.py [--dir tests/data/modelscope]

Independent of the writer: the weights are read back from the files (torch.load for
pytorch_model.bin, a byte-level parser for model.safetensors), the names are resolved the way an
engine has to (prefix bert./plm./crossattention., LayerNorm gamma/beta, position_ids ignored) and
the forward is a plain numpy float64 BERT. The pipelines are re-derived from their rules, not run
through msref.py:
  zero-shot  logits from the golden's input ids; scores by the stated rule; sort descending
  fill-mask  logits at [MASK]; top-5; the pipeline's decoded text
  SiameseUIE each hint run ALONE (no hint padding), each text window with only its valid tokens
             (no padding), hint positions starting at the window length (384 when the text is split,
             else n); per-token logits = mean over the windows covering the token; spans by the
             head > 0.5 / first tail >= head rule; schema recursion.
Only tokenisation reuses msref.BertTokenizer (with the vocab.txt read from disk) to confirm ids.
Exit status 0 and "N passed, 0 failed" when everything agrees.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msref  # noqa: E402  (tokenizer only)

REL = 1e-8
FAILS = []
PASSES = [0]


def check(cond, what):
    if cond:
        PASSES[0] += 1
    else:
        FAILS.append(what)
        print("FAIL:", what)


def close(a, b, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = a.shape == b.shape and bool(np.all(np.abs(a - b) <= REL * np.maximum(1.0, np.abs(b)) + 1e-9))
    if not ok and a.shape == b.shape:
        what += f" (max diff {float(np.abs(a - b).max()):.3g})"
    check(ok, what)


# ----------------------------------------------------------------------------- weights


def read_weights(folder):
    p = os.path.join(folder, "model.safetensors")
    if os.path.exists(p):
        raw = open(p, "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        header.pop("__metadata__", None)
        dt = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}
        out = {}
        for name, e in header.items():
            b, end = e["data_offsets"]
            out[name] = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=dt[e["dtype"]]).reshape(e["shape"])
        return out
    import torch
    sd = torch.load(os.path.join(folder, "pytorch_model.bin"), map_location="cpu")
    return {k: v.numpy() for k, v in sd.items()}


def canon(sd):
    out = {}
    for k, v in sd.items():
        if k.endswith("position_ids"):
            continue
        if k.endswith(".gamma"):
            k = k[:-6] + ".weight"
        elif k.endswith(".beta"):
            k = k[:-5] + ".bias"
        out[k] = v.astype(np.float64)
    return out


# ----------------------------------------------------------------------------- numpy BERT


def ln(x, g, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def lin(W, pre, x):
    return x @ W[pre + ".weight"].T + W[pre + ".bias"]


def embed(W, p, ids, types, positions):
    e = W[p + "embeddings.word_embeddings.weight"][ids] + W[p + "embeddings.token_type_embeddings.weight"][types]
    e = e + W[p + "embeddings.position_embeddings.weight"][positions]
    return ln(e, W[p + "embeddings.LayerNorm.weight"], W[p + "embeddings.LayerNorm.bias"])


def layer(W, p, x, heads):
    L, H = x.shape
    d = H // heads
    q = lin(W, p + "attention.self.query", x).reshape(L, heads, d).transpose(1, 0, 2)
    k = lin(W, p + "attention.self.key", x).reshape(L, heads, d).transpose(1, 0, 2)
    v = lin(W, p + "attention.self.value", x).reshape(L, heads, d).transpose(1, 0, 2)
    s = q @ k.transpose(0, 2, 1) / math.sqrt(d)
    s = np.exp(s - s.max(-1, keepdims=True))
    s = s / s.sum(-1, keepdims=True)
    ctx = (s @ v).transpose(1, 0, 2).reshape(L, H)
    a = ln(lin(W, p + "attention.output.dense", ctx) + x, W[p + "attention.output.LayerNorm.weight"],
           W[p + "attention.output.LayerNorm.bias"])
    h = gelu(lin(W, p + "intermediate.dense", a))
    return ln(lin(W, p + "output.dense", h) + a, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])


def n_layers(W, prefix):
    return len({k[len(prefix):].split(".")[0] for k in W if k.startswith(prefix)})


def encoder(W, x, prefix, heads):
    for i in range(n_layers(W, prefix)):
        x = layer(W, f"{prefix}{i}.", x, heads)
    return x


def load_folder(folder):
    cfg = json.load(open(os.path.join(folder, "config.json"), encoding="utf-8"))
    vocab = open(os.path.join(folder, "vocab.txt"), encoding="utf-8").read().split("\n")[:-1]
    return cfg, vocab, canon(read_weights(folder))


# ----------------------------------------------------------------------------- checks


def check_zero_shot(folder):
    cfg, vocab, W = load_folder(folder)
    g = json.load(open(os.path.join(folder, "golden.json"), encoding="utf-8"))
    tok = msref.BertTokenizer(vocab)
    heads = cfg["num_attention_heads"]
    check(cfg["architectures"] == ["SbertForSequenceClassification"], "zero-shot architecture")
    for c in g["cases"]:
        labels = c["candidate_labels"]
        if isinstance(labels, str):
            labels = [x.strip() for x in labels.replace("，", ",").split(",") if x.strip()]
        check(labels == c["parsed_labels"], f"{c['name']}: parsed labels")
        template = c.get("hypothesis_template", "{}")
        logits = []
        for lab, pr in zip(labels, c["pairs"]):
            check(pr["hypothesis"] == template.format(lab), f"{c['name']}: hypothesis")
            e = tok.encode(c["text"], template.format(lab), max_length=c["max_length"])
            check(e["ids"] == pr["input_ids"] and e["type_ids"] == pr["token_type_ids"], f"{c['name']}: ids")
            ids = np.array(pr["input_ids"])
            x = embed(W, "bert.", ids, np.array(pr["token_type_ids"]), np.arange(len(ids)))
            x = encoder(W, x, "bert.encoder.layer.", heads)
            pooled = np.tanh(lin(W, "bert.pooler.dense", x[0]))
            lg = lin(W, "classifier", pooled)
            close(lg, pr["logits"], f"{c['name']}: logits {lab}")
            logits.append(lg)
        lg = np.array(logits)
        if c["multi_label"] or len(labels) == 1:
            check(c["score_rule"] == "sigmoid(l[0]-l[2])", f"{c['name']}: rule")
            scores = 1.0 / (1.0 + np.exp(-(lg[:, 0] - lg[:, 2])))
        else:
            check(c["score_rule"] == "softmax_over_labels(l[0])", f"{c['name']}: rule")
            ex = np.exp(lg[:, 0] - lg[:, 0].max())
            scores = ex / ex.sum()
        order = sorted(range(len(labels)), key=lambda i: -scores[i])
        check([labels[i] for i in order] == c["output"]["labels"], f"{c['name']}: label order")
        close([scores[i] for i in order], c["output"]["scores"], f"{c['name']}: scores")


def check_fill_mask(folder):
    cfg, vocab, W = load_folder(folder)
    g = json.load(open(os.path.join(folder, "golden.json"), encoding="utf-8"))
    tok = msref.BertTokenizer(vocab)
    heads = cfg["num_attention_heads"]
    dec_w = W.get("cls.predictions.decoder.weight", W["bert.embeddings.word_embeddings.weight"])
    check(np.array_equal(dec_w, W["bert.embeddings.word_embeddings.weight"]), "fill-mask: decoder weight tied")
    if "cls.predictions.bias" in W:
        check(np.array_equal(W["cls.predictions.bias"], W["cls.predictions.decoder.bias"]), "fill-mask: HF bias copy")
    special = {vocab.index(t) for t in msref.SPECIAL_TOKENS}
    for s in g["sentences"]:
        e = tok.encode(s["text"], max_length=128)
        check(e["ids"] == s["input_ids"], f"fill-mask ids {s['text']}")
        ids = np.array(s["input_ids"])
        x = embed(W, "bert.", ids, np.array(s["token_type_ids"]), np.arange(len(ids)))
        x = encoder(W, x, "bert.encoder.layer.", heads)
        t = ln(gelu(lin(W, "cls.predictions.transform.dense", x)), W["cls.predictions.transform.LayerNorm.weight"],
               W["cls.predictions.transform.LayerNorm.bias"])
        logits = t @ dec_w.T + W["cls.predictions.decoder.bias"]
        mpos = [i for i, v in enumerate(s["input_ids"]) if v == vocab.index("[MASK]")]
        check(mpos == s["mask_positions"], "mask positions")
        close(logits[mpos], s["mask_logits"], f"fill-mask logits {s['text']}")
        out_ids = list(ids)
        for p, top in zip(mpos, s["top5"]):
            order = list(np.argsort(-logits[p], kind="stable")[:5])
            check(order == top["ids"], f"fill-mask top5 {s['text']}")
            pr = np.exp(logits[p] - logits[p].max())
            pr /= pr.sum()
            close(pr[order], top["probs"], "fill-mask probs")
            out_ids[p] = order[0]
        toks = [vocab[i] for i in out_ids if i not in special]
        text = " ".join(toks).replace(" ##", "").strip().replace(" .", ".").replace(" ,", ",").replace(" !", "!")
        check(text == s["pipeline_text"], f"fill-mask pipeline text {s['pipeline_text']!r} vs {text!r}")


def check_siamese_uie(folder):
    cfg, vocab, W = load_folder(folder)
    g = json.load(open(os.path.join(folder, "golden.json"), encoding="utf-8"))
    tok = msref.BertTokenizer(vocab)
    heads = cfg["num_attention_heads"]
    n_plm, n_cross = n_layers(W, "plm.encoder.layer."), n_layers(W, "crossattention.layer.")
    check(n_plm + n_cross == cfg["num_hidden_layers"], "uie: plm + cross layers = num_hidden_layers")
    C = g["constants"]
    for case in g["cases"]:
        text = case["text"]
        enc = tok.encode(text)
        check(enc["ids"] == case["text_input_ids"], f"uie {case['name']}: text ids")
        check([list(o) for o in enc["offsets"]] == case["text_offsets"], f"uie {case['name']}: offsets")
        ids, offsets = case["text_input_ids"], case["text_offsets"]
        n = len(ids)
        split = -(-(n - C["max_len"]) // C["slide_len"]) + 1 if n > C["max_len"] else 1
        win_len = C["max_len"] if split > 1 else n
        wins = []
        for j in range(split):
            sh = j * C["slide_len"]
            w = np.array(ids[sh:sh + C["max_len"]])
            x = embed(W, "plm.", w, np.zeros(len(w), dtype=int), np.arange(len(w)))
            wins.append((sh, encoder(W, x, "plm.encoder.layer.", heads)))
        check([{"shift": s, "length": win_len, "valid": len(x)} for s, x in wins] == case["windows"], "uie windows")
        calls = iter(case["calls"])

        def run(prefix, schema):
            call = next(calls)
            check(call["prefix"] == prefix and call["schema_types"] == list(schema), "uie call order")
            found = []
            for st, gh in zip(schema, call["hints"]):
                hint = "".join(f"{it['type']}: {it['span']}, " for it in prefix) + f"{st}: "
                check(hint == gh["hint"], f"uie hint {hint!r}")
                hids = tok.encode(hint, max_length=C["hint_max_len"])["ids"]
                check(hids == gh["input_ids"], f"uie hint ids {hint!r}")
                check(gh["position_start"] == win_len, "uie hint position start")
                hp = embed(W, "plm.", np.array(hids), np.ones(len(hids), dtype=int), win_len + np.arange(len(hids)))
                hp = encoder(W, hp, "plm.encoder.layer.", heads)
                acc_h, acc_t, cnt = np.zeros(n), np.zeros(n), np.zeros(n)
                per_win = {}
                for sh, xt in wins:
                    y = encoder(W, np.concatenate([xt, hp]), "crossattention.layer.", heads)[:len(xt)]
                    hh, tt = lin(W, "head_clsf", y)[:, 0], lin(W, "tail_clsf", y)[:, 0]
                    per_win[sh] = (hh, tt)
                    acc_h[sh:sh + len(xt)] += hh
                    acc_t[sh:sh + len(xt)] += tt
                    cnt[sh:sh + len(xt)] += 1
                head, tail = acc_h / cnt, acc_t / cnt
                close(head, gh["head_logits"], f"uie {case['name']} head {hint!r}")
                close(tail, gh["tail_logits"], f"uie {case['name']} tail {hint!r}")
                check(len(gh["window_overlaps"]) == split - 1, "uie overlap count")
                for (sa, _), (sb, _), ov in zip(wins, wins[1:], gh["window_overlaps"]):
                    lo, hi = ov["tokens"]
                    check([lo, hi] == [sb, sa + C["max_len"]], "uie overlap range")
                    close([per_win[sa][0][lo - sa:hi - sa], per_win[sb][0][:hi - lo]], ov["head"], "uie overlap head")
                    close([per_win[sa][1][lo - sa:hi - sa], per_win[sb][1][:hi - lo]], ov["tail"], "uie overlap tail")
                ents = []
                for ph in range(n):
                    if head[ph] > C["threshold"]:
                        for pt in range(ph, n):
                            if tail[pt] > C["threshold"]:
                                a, b = offsets[ph][0], offsets[pt][1]
                                ents.append({"offset": [a, b], "span": text[a:b]})
                                break
                ents.sort(key=lambda e: tuple(e["offset"]))
                check(ents == gh["entities"], f"uie {case['name']} entities {hint!r}")
                found += [prefix + [{"type": st, "span": e["span"], "offset": e["offset"]}] for e in ents]
            out = []
            for pi in found:
                sub = schema[pi[-1]["type"]]
                if sub is None:
                    out.append(pi)
                else:
                    out += run(pi, sub)
            return out

        result = run([], case["schema"])
        check(next(calls, None) is None, "uie: no extra calls")
        check({"output": result} == case["output"], f"uie {case['name']}: pipeline output")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data",
                                                  "modelscope"))
    d = os.path.normpath(ap.parse_args().dir)
    check_zero_shot(os.path.join(d, "structbert-zero-shot"))
    check_fill_mask(os.path.join(d, "structbert-fill-mask"))
    check_fill_mask(os.path.join(d, "structbert-fill-mask-st"))
    check_siamese_uie(os.path.join(d, "siamese-uie"))
    print(f"{PASSES[0]} passed, {len(FAILS)} failed")
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
