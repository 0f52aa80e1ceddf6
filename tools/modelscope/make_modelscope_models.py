#!/usr/bin/python3
"""Tiny random ModelScope checkpoints (StructBERT zero-shot, StructBERT fill-mask, SiameseUIE) in
ModelScope's on-disk layout, with float64 goldens of ModelScope's own pipelines.

    /usr/bin/python3 tools/modelscope/make_modelscope_models.py [--out tests/data/modelscope]

Needs Debian's python3-torch (1.13; newer torch 2.x releases add a random .data/serialization_id
record to torch.save archives, so the .bin files would no longer be byte-identical) and numpy. The model and
pipeline code is msref.py (a line-by-line re-implementation of ModelScope's source; no
transformers / modelscope needed). Deterministic: fixed seeds, two runs give identical bytes.

Folders written (see tests/data/modelscope/README.md and tools/modelscope/NOTES.md):
  structbert-zero-shot     SbertForSequenceClassification, 3 labels, pytorch_model.bin
  structbert-fill-mask     SbertForMaskedLM, pytorch_model.bin, decoder weight tied (stored once)
  structbert-fill-mask-st  the same weights as model.safetensors: LayerNorm gamma/beta names, no
                           position_ids, no pooler, decoder weight stored twice, plus an HF-style
                           cls.predictions.bias equal to cls.predictions.decoder.bias
  siamese-uie              SiameseUieModel, 2 plm + 2 cross layers, pytorch_model.bin
"""
import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msref  # noqa: E402

torch.set_num_threads(1)

HIDDEN, HEADS, INTER = 32, 4, 64

# ----------------------------------------------------------------------------- texts

ZS_CASES = [
    # name, text, candidate_labels (as the user passes them), template (None = default '{}'),
    # multi_label, preprocessor max_length
    ("labels_string_default_template", "世界那么大，我想去看看", "家居,旅游,科技,军事,游戏,故事", None, False, 512),
    ("labels_list_multi_label", "世界那么大，我想去看看", ["家居", "旅游", "科技", "军事", "游戏", "故事"], None, True, 512),
    ("labels_cn_commas_template", "全新突破 解放军运20版空中加油机曝光", "文化， 体育，军事,科技,,汽车 ",
     "这篇文章的标题是{}", False, 512),
    ("custom_template", "这家餐厅的菜很好吃，服务也很热情！", ["好评", "差评"], "这是一条{}评论", False, 512),
    ("custom_template_multi_label", "这家餐厅的菜很好吃，服务也很热情！", ["好评", "差评"], "这是一条{}评论", True, 512),
    ("single_label_string", "我想去北京看看Python大会", "旅游", None, False, 512),
    # a preprocessor built with max_length=32 (ZeroShotClassificationTransformersPreprocessor(model_dir,
    # sequence_length=32)); the pipeline's own sequence_length argument never reaches it (see NOTES.md)
    ("truncated_max_length_32", "在北京冬奥会自由式滑雪女子大跳台决赛中，中国选手以188.25分获得金牌，这是中国选手在冬奥会获得的第一块金牌。",
     ["体育", "科技"], "这篇文章的标题是{}", False, 32),
]

FM_TEXTS = [
    "我想去[MASK]京看看。",
    "今天天气很[MASK]，我们去公园[MASK][MASK]吧！",
    "The quick [MASK] fox jumps over 2024 dogs.",
]

UIE_SENTENCE = "1944年毕业于北大的名古屋铁道会长谷口清太郎等人在日本积极筹资，共筹款2.7亿日元，参加捐款的日本企业有69家。"
UIE_NESTED = "在北京冬奥会自由式滑雪女子大跳台决赛中，中国选手谷爱凌以188.25分获得金牌。"
LONG_POOL = [
    "谷爱凌在北京冬奥会获得金牌。",
    "中国选手在日本参加比赛。",
    "名古屋铁道会长谷口清太郎去北京旅游。",
    "北大的学生在公园看自由式滑雪比赛。",
    "今天天气很好，我们去公园看看。",
    "日本企业参加捐款，共有69家。",
    "这家餐厅的菜很好吃，服务也很热情。",
    "世界那么大，我想去看看。",
]


def long_text():
    rng = np.random.default_rng(20260723)
    s = ""
    while len(s) < 770:
        s += LONG_POOL[int(rng.integers(len(LONG_POOL)))]
    return s


UIE_CASES = [
    ("flat", UIE_SENTENCE, {"人物": None, "地理位置": None, "组织机构": None}),
    ("nested", UIE_NESTED, {"人物": {"比赛项目": None, "参赛地点": None}}),
    ("long_3_windows", None, {"人物": None, "地点": None}),
]

# ----------------------------------------------------------------------------- vocab
# bert-base-chinese positions for the specials ([PAD]=0, [unused1..99], [UNK]=100, [CLS]=101,
# [SEP]=102, [MASK]=103), then the characters the texts use (sorted by code point) and a few word
# pieces. Left out on purpose (-> [UNK], one per character): 筹 曝 凌.
UNK_CHARS = set("筹曝凌")
WORD_TOKENS = ["19", "##44", "18", "##8", "20", "##24", "25", "69", "py", "##thon", "the", "quick", "fox",
               "jump", "##s", "over", "dog"]


def build_vocab():
    texts = [c[1] for c in ZS_CASES] + [c[3] or "" for c in ZS_CASES] + FM_TEXTS
    texts += [UIE_SENTENCE, UIE_NESTED] + LONG_POOL
    for c in ZS_CASES:
        texts += [c[2]] if isinstance(c[2], str) else c[2]
    for _, _, schema in UIE_CASES:
        stack = [schema]
        while stack:
            d = stack.pop()
            for k, v in d.items():
                texts.append(k)
                if v:
                    stack.append(v)
    chars = set()
    for t in texts:
        for ch in t.replace("[MASK]", ""):
            if msref._is_chinese_char(ord(ch)) or msref._is_punctuation(ch):
                chars.add(ch)
    chars |= set(":,.!")  # hint punctuation (': ' and ', ') and ASCII sentence ends
    chars -= UNK_CHARS
    specials = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    return specials + sorted(chars) + WORD_TOKENS


# ----------------------------------------------------------------------------- weights


def init_random(model, seed):
    """N(0, 0.2) weights and embeddings, N(0, 0.1) biases, LayerNorm gamma 1 + N(0, 0.1), beta
    N(0, 0.1); float32. Parameters in model.named_parameters() order (a tied parameter once)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if "LayerNorm" in name and name.endswith("weight"):
                a = 1.0 + rng.normal(0.0, 0.1, shape)
            elif name.endswith("bias") or "LayerNorm" in name:
                a = rng.normal(0.0, 0.1, shape)
            else:
                a = rng.normal(0.0, 0.2, shape)
            p.copy_(torch.from_numpy(a.astype(np.float32)))
    return model


ST_DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def write_safetensors(path, tensors, metadata):
    """Hand-written safetensors: u64 LE header length, compact JSON header (tensors sorted by name,
    as the safetensors package writes them), padded with spaces to a multiple of 8, raw LE data."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        code, npdt = ST_DTYPES[t.dtype]
        b = t.numpy().astype(npdt).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    inv = {v[0]: v[1] for v in ST_DTYPES.values()}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=inv[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(a.copy())
    return out, meta


def hf_rename(name):
    # HF PreTrainedModel._load_state_dict_into_model / _fix_key: gamma -> weight, beta -> bias
    if name.endswith(".gamma"):
        return name[:-6] + ".weight"
    if name.endswith(".beta"):
        return name[:-5] + ".bias"
    return name


def load_into(model, sd):
    """Load a state dict read from disk into a float64 copy of `model`'s class, the way HF
    from_pretrained would: gamma/beta renamed, missing position_ids / pooler ignored, the HF-style
    cls.predictions.bias ignored (unexpected key), tied decoder weight re-tied afterwards."""
    sd = {hf_rename(k): v for k, v in sd.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    for k in missing:
        assert k.endswith("position_ids") or ".pooler." in k, ("missing", k)
    for k in unexpected:
        assert k == "cls.predictions.bias", ("unexpected", k)
    with torch.no_grad():
        for k, v in own.items():
            if k in sd:
                v.copy_(sd[k].to(v.dtype))
    if isinstance(model, msref.SbertForMaskedLM):
        if "cls.predictions.decoder.weight" in sd:
            assert torch.equal(sd["cls.predictions.decoder.weight"], sd["bert.embeddings.word_embeddings.weight"])
    return model.double().eval()


# ----------------------------------------------------------------------------- files


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_golden(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def r9(x):
    if isinstance(x, (list, tuple)):
        return [r9(v) for v in x]
    return float(f"{float(x):.9g}")


def hf_config(arch, model_type, vocab_size, layers, max_pos, extra=None):
    c = {
        "architectures": [arch],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": max_pos,
        "model_type": model_type,
        "num_attention_heads": HEADS,
        "num_hidden_layers": layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
    }
    c.update(extra or {})
    return dict(sorted(c.items()))


def ms_configuration(task, model_type, pipeline, preprocessor, extra_model=None):
    # the configuration.json every ModelScope model repo has; Model.from_pretrained reads
    # 'task' and model.type (MS/models/base/base_model.py), get_model_type reads model.type
    m = {"type": model_type}
    m.update(extra_model or {})
    return {"framework": "pytorch", "task": task, "model": m, "pipeline": {"type": pipeline},
            "preprocessor": {"type": preprocessor}}


TOKENIZER_CONFIG = {"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer",
                    "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                    "mask_token": "[MASK]"}


def write_folder(folder, vocab, config, configuration, tokenizer_config=True):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    write_json(os.path.join(folder, "config.json"), config)
    write_json(os.path.join(folder, "configuration.json"), configuration)
    tc = os.path.join(folder, "tokenizer_config.json")
    if tokenizer_config:
        write_json(tc, TOKENIZER_CONFIG)
    elif os.path.exists(tc):
        os.remove(tc)


def cfg_obj(config):
    return msref.Config(dict(config, num_labels=len(config.get("id2label", {})) or 2))


# ----------------------------------------------------------------------------- zero-shot


def make_zero_shot(out, vocab, report):
    name = "structbert-zero-shot"
    folder = os.path.join(out, name)
    id2label = {"0": "entailment", "1": "neutral", "2": "contradiction"}
    config = hf_config("SbertForSequenceClassification", "structbert", len(vocab), 2, 128,
                       {"id2label": id2label, "label2id": {v: int(k) for k, v in id2label.items()}})
    write_folder(folder, vocab, config,
                 ms_configuration("zero-shot-classification", "structbert", "zero-shot-classification",
                                  "zero-shot-cls-tokenizer"))
    model = init_random(msref.SbertForSequenceClassification(cfg_obj(config)), 1201)
    path = os.path.join(folder, "pytorch_model.bin")
    torch.save(model.state_dict(), path)

    m = load_into(msref.SbertForSequenceClassification(cfg_obj(config)), torch.load(path))
    tok = msref.BertTokenizer(vocab)
    cases, min_gap, max_pad = [], 1e9, 0.0
    for cname, text, labels, template, multi, max_len in ZS_CASES:
        pipe = msref.ZeroShotPipeline(m, tok, max_length=max_len)
        kw = {} if template is None else {"hypothesis_template": template}
        result, parsed, tmpl, encs, logits = pipe(text, labels, multi_label=multi, **kw)
        pairs = []
        for lab, e, lg in zip(parsed, encs, logits):
            n = sum(e["attention_mask"])
            # the same pair alone, unpadded: must equal the padded batch row
            with torch.no_grad():
                alone = m(torch.tensor([e["ids"][:n]]), None, torch.tensor([e["type_ids"][:n]]))[0].numpy()
            max_pad = max(max_pad, float(np.abs(alone - lg).max()))
            pairs.append({"label": lab, "hypothesis": tmpl.format(lab), "input_ids": e["ids"][:n],
                          "token_type_ids": e["type_ids"][:n], "logits": r9(lg.tolist())})
        sc = result["scores"]
        if len(sc) > 1:
            min_gap = min(min_gap, min(a - b for a, b in zip(sc, sc[1:])))
        case = {"name": cname, "text": text, "candidate_labels": labels}
        if template is not None:
            case["hypothesis_template"] = template
        case.update({"multi_label": multi, "max_length": max_len, "parsed_labels": parsed,
                     "score_rule": "sigmoid(l[0]-l[2])" if (multi or len(parsed) == 1) else "softmax_over_labels(l[0])",
                     "pairs": pairs, "output": {"labels": result["labels"], "scores": r9(result["scores"])}})
        cases.append(case)
    assert max_pad < 1e-12, max_pad
    assert min_gap > 1e-4, min_gap
    golden = {
        "model": name,
        "reference": "tools/modelscope/msref.py (ModelScope SbertForSequenceClassification + "
                     "ZeroShotClassificationPipeline), float64 on the stored float32 weights",
        "entailment_id": 0, "contradiction_id": 2,
        "min_gap_between_sorted_scores": float(f"{min_gap:.3g}"),
        "cases": cases,
    }
    write_golden(os.path.join(folder, "golden.json"), golden)
    report[name] = {"padded_vs_alone": max_pad, "min_score_gap": min_gap}


# ----------------------------------------------------------------------------- fill-mask


def make_fill_mask(out, vocab, report):
    config = hf_config("SbertForMaskedLM", "structbert", len(vocab), 2, 128)
    model = init_random(msref.SbertForMaskedLM(cfg_obj(config)), 1301)
    sd = model.state_dict()
    assert sd["cls.predictions.decoder.weight"].data_ptr() == sd["bert.embeddings.word_embeddings.weight"].data_ptr()
    conf = ms_configuration("fill-mask", "structbert", "fill-mask", "fill-mask")

    # (1) pytorch_model.bin: torch.save(state_dict): bert.* (position_ids buffer, pooler),
    #     cls.predictions.transform.*, cls.predictions.decoder.{weight,bias}; the tied weight is one
    #     storage referenced by both keys (stored once)
    f1 = os.path.join(out, "structbert-fill-mask")
    write_folder(f1, vocab, config, conf)
    p1 = os.path.join(f1, "pytorch_model.bin")
    torch.save(sd, p1)
    sd1 = torch.load(p1)
    assert sd1["cls.predictions.decoder.weight"].data_ptr() == sd1["bert.embeddings.word_embeddings.weight"].data_ptr()

    # (2) model.safetensors: old TF-style LayerNorm gamma/beta names, no position_ids, no pooler,
    #     decoder weight stored as its own (identical) tensor, HF-style cls.predictions.bias too
    f2 = os.path.join(out, "structbert-fill-mask-st")
    write_folder(f2, vocab, config, conf, tokenizer_config=False)
    st = {}
    for k, v in sd.items():
        if k.endswith("position_ids") or ".pooler." in k:
            continue
        if "LayerNorm" in k:
            k = k[:-len(".weight")] + ".gamma" if k.endswith(".weight") else k[:-len(".bias")] + ".beta"
        st[k] = v.detach().clone()
    st["cls.predictions.bias"] = sd["cls.predictions.decoder.bias"].detach().clone()
    p2 = os.path.join(f2, "model.safetensors")
    write_safetensors(p2, st, {"format": "pt"})
    sd2, _ = read_safetensors(p2)

    tok = msref.BertTokenizer(vocab)
    res = []
    for sdx in (sd1, sd2):
        m = load_into(msref.SbertForMaskedLM(cfg_obj(config)), sdx)
        pipe = msref.FillMaskPipeline(m, tok, max_length=128)
        sents, min_margin, max_pad = [], 1e9, 0.0
        for text in FM_TEXTS:
            result, e, logits = pipe(text)
            ids = e["ids"]
            with torch.no_grad():
                alone = m(torch.tensor([ids]), None, torch.tensor([e["type_ids"]]))[0].numpy()
            max_pad = max(max_pad, float(np.abs(alone - logits).max()))
            mpos = [i for i, t in enumerate(ids) if t == tok.mask_id]
            top = []
            for p in mpos:
                row = logits[p]
                order = np.argsort(-row, kind="stable")[:5]
                probs = msref.softmax_np(row)
                min_margin = min(min_margin, float(row[order[0]] - row[order[1]]))
                top.append({"ids": [int(i) for i in order], "tokens": [vocab[i] for i in order],
                            "probs": r9([probs[i] for i in order])})
            sents.append({"text": text, "input_ids": ids, "token_type_ids": e["type_ids"],
                          "mask_positions": mpos, "mask_logits": [r9(logits[p].tolist()) for p in mpos],
                          "top5": top, "pipeline_text": result["text"][0]})
        assert max_pad < 1e-12 and min_margin > 1e-4, (max_pad, min_margin)
        res.append((sents, min_margin, max_pad))
    assert json.dumps(res[0][0]) == json.dumps(res[1][0]), "the two layouts must give the same outputs"
    for folder, name, fmt in ((f1, "structbert-fill-mask", "pytorch_model.bin"),
                              (f2, "structbert-fill-mask-st", "model.safetensors")):
        golden = {
            "model": name, "weights": fmt,
            "reference": "tools/modelscope/msref.py (ModelScope SbertForMaskedLM + FillMaskPipeline), float64 "
                         "on the stored float32 weights; logits over the whole vocabulary at each [MASK]",
            "vocab_size": len(vocab), "mask_id": tok.mask_id,
            "min_top1_top2_margin": float(f"{res[0][1]:.3g}"),
            "sentences": res[0][0],
        }
        write_golden(os.path.join(folder, "golden.json"), golden)
        report[name] = {"padded128_vs_alone": res[0][2], "min_top1_margin": res[0][1]}


# ----------------------------------------------------------------------------- SiameseUIE

# Random weights put about a third of all positions above the 0.5 threshold. The classifiers are
# rescaled after the random init so that a handful of spans come out:
#   head_clsf.weight *= 1.5, head_clsf.bias = -2.3 ; tail_clsf.weight *= 1.5, tail_clsf.bias = -1.6
HEAD_SCALE, HEAD_BIAS, TAIL_SCALE, TAIL_BIAS = 1.5, -1.28, 1.5, 0.45


def make_siamese_uie(out, vocab, report):
    name = "siamese-uie"
    folder = os.path.join(out, name)
    # num_hidden_layers is the TOTAL (plm + cross), as SiameseUieModel.__init__ builds
    # BertModel(config) with all of them before splitting
    config = hf_config("SiameseUieModel", "bert", len(vocab), 4, 512)
    write_folder(folder, vocab, config,
                 ms_configuration("siamese-uie", "bert", "siamese-uie", "siamese-uie-preprocessor"))
    model = init_random(msref.SiameseUieModel(cfg_obj(config)), 1401)
    with torch.no_grad():
        model.head_clsf.weight.mul_(HEAD_SCALE)
        model.head_clsf.bias.fill_(HEAD_BIAS)
        model.tail_clsf.weight.mul_(TAIL_SCALE)
        model.tail_clsf.bias.fill_(TAIL_BIAS)
    path = os.path.join(folder, "pytorch_model.bin")
    torch.save(model.state_dict(), path)

    m = load_into(msref.SiameseUieModel(cfg_obj(config)), torch.load(path))
    tok = msref.BertTokenizer(vocab)
    pipe = msref.SiameseUiePipeline(m, tok)
    cases, min_margin, n_spans = [], 1e9, 0
    for cname, text, schema in UIE_CASES:
        if text is None:
            text = long_text()
        enc = tok.encode(text)
        n = len(enc["ids"])
        result = pipe(text, schema=schema)
        split_num = -(-(n - 384) // 352) + 1 if n > 384 else 1
        windows = [{"shift": j * 352, "length": 384 if split_num > 1 else n,
                    "valid": min(384, n - j * 352)} for j in range(split_num)]
        calls = []
        for c in pipe.trace:
            for h in c["hints"]:
                for v in h["head_logits"] + h["tail_logits"]:
                    min_margin = min(min_margin, abs(v - 0.5))
                n_spans += len(h["entities"])
                h["head_logits"] = r9(h["head_logits"])
                h["tail_logits"] = r9(h["tail_logits"])
                for ov in h["window_overlaps"]:
                    ov["head"], ov["tail"] = r9(ov["head"]), r9(ov["tail"])
            calls.append(c)
        cases.append({"name": cname, "text": text, "schema": schema, "text_input_ids": enc["ids"],
                      "text_offsets": [list(o) for o in enc["offsets"]], "windows": windows,
                      "calls": calls, "output": result})
    assert min_margin > 1e-3, min_margin
    golden = {
        "model": name,
        "reference": "tools/modelscope/msref.py (ModelScope SiameseUieModel.fast_inference + "
                     "SiameseUiePipeline), float64 on the stored float32 weights",
        "constants": {"max_len": 384, "slide_len": 352, "hint_max_len": 128, "threshold": 0.5},
        "classifier_rescale": {"head_clsf.weight_scale": HEAD_SCALE, "head_clsf.bias": HEAD_BIAS,
                               "tail_clsf.weight_scale": TAIL_SCALE, "tail_clsf.bias": TAIL_BIAS},
        "min_abs_logit_minus_threshold": float(f"{min_margin:.3g}"),
        "cases": cases,
    }
    write_golden(os.path.join(folder, "golden.json"), golden)
    report[name] = {"min_margin": min_margin, "spans_decoded": n_spans,
                    "outputs": {c["name"]: len(c["output"]["output"]) for c in cases}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data",
                                                  "modelscope"))
    args = ap.parse_args()
    out = os.path.normpath(args.out)
    os.makedirs(out, exist_ok=True)
    vocab = build_vocab()
    report = {"vocab_size": len(vocab)}
    make_zero_shot(out, vocab, report)
    make_fill_mask(out, vocab, report)
    make_siamese_uie(out, vocab, report)
    print(json.dumps(report, ensure_ascii=False, indent=1))
    for root, _, files in sorted(os.walk(out)):
        for f in sorted(files):
            p = os.path.join(root, f)
            if f == "README.md":
                continue
            print(f"{hashlib.sha256(open(p, 'rb').read()).hexdigest()[:16]} {os.path.getsize(p):8d} "
                  f"{os.path.relpath(p, out)}")


if __name__ == "__main__":
    main()
