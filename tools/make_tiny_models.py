#!/usr/bin/python3
"""Make the tiny random test models of tests/data/tiny and their golden outputs.

    /usr/bin/python3 tools/make_tiny_models.py --out tests/data/tiny

Needs Debian's python3-torch (1.13) and numpy; python3-onnx for tiny-bert-onnx-int8,
whose graph is copied node for node from
../shared/models/bge-small-zh-v1.5/onnx/model_quantized.onnx (--bge-onnx); that model is
skipped with a message when onnx or the template is missing.

Every folder is a model folder as users have it (config.json, vocab.txt,
tokenizer_config.json, special_tokens_map.json, weights file) plus golden.json.
The weights are random (fixed seeds) and written in the real layouts:

  tiny-bert           HF BertModel.save_pretrained, model.safetensors F32, no prefix, pooler
  tiny-ernie          HF ErnieModel names with prefix "ernie.", task-type embeddings,
                      model.safetensors F16, config vocab_size > vocab.txt lines
  tiny-mlm            BertForMaskedLM, torch.save(state_dict) -> pytorch_model.bin (zip), F16,
                      cls.predictions.decoder.weight IS bert.embeddings.word_embeddings.weight
  tiny-nli            BertForSequenceClassification, pytorch_model.bin F32, 3 labels
  tiny-uie            PaddleNLP UIE names, model.safetensors F32, Linear weights [in, out]
  tiny-bert-onnx-int8 onnxruntime dynamic int8 quantization, same graph as bge-small-zh-v1.5

The golden outputs come from the plain PyTorch modules below (written from the paper, not
from HF): float64 computation on the stored weights (fp16 ones upcast; int8 ones dequantized).
The script checks that float32 agrees with float64 and that a padded batch with an attention
mask agrees with the one-sequence-at-a-time outputs.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HIDDEN = 32
HEADS = 4
INTER = 64
LAYERS = 2
MAX_POS = 64
TOL = 1e-5

# ----------------------------------------------------------------------------- vocab
# bert-base-chinese positions: [PAD]=0, [unused1..99]=1..99, [UNK]=100, [CLS]=101,
# [SEP]=102, [MASK]=103, then ordinary tokens.
EXTRA_TOKENS = [
    "的", "一", "是", "中", "国", "人", "天", "气", "好", "北", "京", "我",
    "，", "。", "2024", "the", "quick", "fox", "python", "##s", "##ing", "##ed", "##on", "##水",
]
VOCAB = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + EXTRA_TOKENS
assert VOCAB.index("[UNK]") == 100 and VOCAB.index("[MASK]") == 103
NVOCAB = len(VOCAB)  # 128 lines
CLS, SEP = 101, 102

# ----------------------------------------------------------------------------- reference modules


class Embeddings(nn.Module):
    def __init__(self, rows, type_vocab, task_vocab, eps):
        super().__init__()
        self.word = nn.Embedding(rows, HIDDEN)
        self.pos = nn.Embedding(MAX_POS, HIDDEN)
        self.ttype = nn.Embedding(type_vocab, HIDDEN)
        self.task = nn.Embedding(task_vocab, HIDDEN) if task_vocab else None
        self.ln = nn.LayerNorm(HIDDEN, eps=eps)

    def forward(self, ids, types, tasks):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.word(ids) + self.pos(positions) + self.ttype(types)
        if self.task is not None:
            x = x + self.task(tasks)
        return self.ln(x)


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q = nn.Linear(HIDDEN, HIDDEN)
        self.k = nn.Linear(HIDDEN, HIDDEN)
        self.v = nn.Linear(HIDDEN, HIDDEN)
        self.o = nn.Linear(HIDDEN, HIDDEN)

    def forward(self, x, mask_add):  # x [B, L, H]; mask_add [B, 1, 1, L]
        B, L, _ = x.shape
        d = HIDDEN // HEADS

        def heads(t):
            return t.view(B, L, HEADS, d).transpose(1, 2)  # [B, heads, L, d]

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + mask_add
        p = torch.softmax(scores, dim=-1)
        ctx = (p @ v).transpose(1, 2).reshape(B, L, HIDDEN)
        return self.o(ctx)


class Layer(nn.Module):
    def __init__(self, eps):
        super().__init__()
        self.attn = SelfAttention()
        self.ln1 = nn.LayerNorm(HIDDEN, eps=eps)
        self.ffn_in = nn.Linear(HIDDEN, INTER)
        self.ffn_out = nn.Linear(INTER, HIDDEN)
        self.ln2 = nn.LayerNorm(HIDDEN, eps=eps)

    def forward(self, x, mask_add):
        x = self.ln1(x + self.attn(x, mask_add))  # post-LN
        x = self.ln2(x + self.ffn_out(F.gelu(self.ffn_in(x))))  # exact erf GELU
        return x


class Model(nn.Module):
    """Encoder + the heads one tiny model has. Parameter names here are the canonical ones
    that each writer maps to its file layout."""

    def __init__(self, rows, type_vocab, task_vocab, eps, heads):
        super().__init__()
        self.emb = Embeddings(rows, type_vocab, task_vocab, eps)
        self.layers = nn.ModuleList([Layer(eps) for _ in range(LAYERS)])
        self.heads = heads
        if "pooler" in heads:
            self.pooler = nn.Linear(HIDDEN, HIDDEN)
        if "mlm" in heads:
            self.mlm_dense = nn.Linear(HIDDEN, HIDDEN)
            self.mlm_ln = nn.LayerNorm(HIDDEN, eps=eps)
            self.mlm_bias = nn.Parameter(torch.zeros(rows))
        if "classifier" in heads:
            self.classifier = nn.Linear(HIDDEN, 3)
        if "uie" in heads:
            self.start = nn.Linear(HIDDEN, 1)
            self.end = nn.Linear(HIDDEN, 1)

    def forward(self, ids, types, tasks, valid):  # valid [B, L] 1 = token, 0 = padding
        mask_add = (1.0 - valid.to(self.emb.ln.weight.dtype)) * torch.finfo(self.emb.ln.weight.dtype).min
        mask_add = mask_add[:, None, None, :]
        x = self.emb(ids, types, tasks)
        for layer in self.layers:
            x = layer(x, mask_add)
        w = valid.to(x.dtype).unsqueeze(-1)
        out = {
            "last_hidden_state": x,
            "pooled_cls": x[:, 0],
            "pooled_mean": (x * w).sum(1) / w.sum(1),
        }
        if "pooler" in self.heads:
            out["pooler_output"] = torch.tanh(self.pooler(x[:, 0]))
        if "mlm" in self.heads:
            h = self.mlm_ln(F.gelu(self.mlm_dense(x)))
            out["mlm_logits"] = h @ self.emb.word.weight.T + self.mlm_bias  # tied decoder
        if "classifier" in self.heads:
            out["classifier_logits"] = self.classifier(torch.tanh(self.pooler(x[:, 0])))
        if "uie" in self.heads:
            out["uie_start_prob"] = torch.sigmoid(self.start(x)).squeeze(-1)
            out["uie_end_prob"] = torch.sigmoid(self.end(x)).squeeze(-1)
        return out


def random_weights(model, seed, dtype):
    """Canonical state dict of numpy arrays in the storage dtype (torch layout [out, in])."""
    rng = np.random.default_rng(seed)
    sd = {}
    for name, p in model.state_dict().items():
        shape = tuple(p.shape)
        is_ln = ".ln" in name or name.startswith("mlm_ln")
        if is_ln and name.endswith("weight"):
            a = 1.0 + rng.normal(0.0, 0.1, shape)
        elif is_ln:
            a = rng.normal(0.0, 0.1, shape)
        else:
            a = rng.normal(0.0, 0.2, shape)
        sd[name] = a.astype(dtype)
    return sd


def load(model, sd, dtype):
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in sd.items()})
    return model.to(dtype).eval()


# ----------------------------------------------------------------------------- writers


def write_safetensors(path, tensors, metadata):
    """tensors: {name: np.ndarray}; written sorted by name, as the safetensors package does."""
    dt = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
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
    """Independent read-back of what write_safetensors wrote."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", None)
    np_dt = {"F32": "<f4", "F16": "<f2"}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=np_dt[e["dtype"]]).reshape(e["shape"])
    return out, meta


def bert_names(prefix, layer_prefix="encoder.layer"):
    """canonical name -> HF BERT/ERNIE name."""
    m = {
        "emb.word.weight": "embeddings.word_embeddings.weight",
        "emb.pos.weight": "embeddings.position_embeddings.weight",
        "emb.ttype.weight": "embeddings.token_type_embeddings.weight",
        "emb.task.weight": "embeddings.task_type_embeddings.weight",
        "emb.ln.weight": "embeddings.LayerNorm.weight",
        "emb.ln.bias": "embeddings.LayerNorm.bias",
        "pooler.weight": "pooler.dense.weight",
        "pooler.bias": "pooler.dense.bias",
    }
    sub = {
        "attn.q": "attention.self.query", "attn.k": "attention.self.key", "attn.v": "attention.self.value",
        "attn.o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
        "ffn_in": "intermediate.dense", "ffn_out": "output.dense", "ln2": "output.LayerNorm",
    }
    for i in range(LAYERS):
        for a, b in sub.items():
            for wb in ("weight", "bias"):
                m[f"layers.{i}.{a}.{wb}"] = f"{layer_prefix}.{i}.{b}.{wb}"
    return {k: prefix + v for k, v in m.items()}


def paddle_uie_names():
    m = {
        "emb.word.weight": "encoder.embeddings.word_embeddings.weight",
        "emb.pos.weight": "encoder.embeddings.position_embeddings.weight",
        "emb.ttype.weight": "encoder.embeddings.token_type_embeddings.weight",
        "emb.task.weight": "encoder.embeddings.task_type_embeddings.weight",
        "emb.ln.weight": "encoder.embeddings.layer_norm.weight",
        "emb.ln.bias": "encoder.embeddings.layer_norm.bias",
        "start.weight": "linear_start.weight", "start.bias": "linear_start.bias",
        "end.weight": "linear_end.weight", "end.bias": "linear_end.bias",
    }
    sub = {
        "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj", "attn.v": "self_attn.v_proj",
        "attn.o": "self_attn.out_proj", "ln1": "norm1", "ffn_in": "linear1", "ffn_out": "linear2", "ln2": "norm2",
    }
    for i in range(LAYERS):
        for a, b in sub.items():
            for wb in ("weight", "bias"):
                m[f"layers.{i}.{a}.{wb}"] = f"encoder.encoder.layers.{i}.{b}.{wb}"
    return m


def is_linear_weight(canon):
    return canon.endswith(".weight") and (".attn." in canon or ".ffn_" in canon or canon.split(".")[0] in (
        "pooler", "mlm_dense", "classifier", "start", "end"))


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


def write_common(folder, config, lower_case):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(VOCAB) + "\n")
    write_json(os.path.join(folder, "config.json"), config)
    write_json(os.path.join(folder, "tokenizer_config.json"), {
        "clean_up_tokenization_spaces": True, "cls_token": "[CLS]", "do_basic_tokenize": True,
        "do_lower_case": lower_case, "mask_token": "[MASK]", "model_max_length": MAX_POS,
        "never_split": None, "pad_token": "[PAD]", "sep_token": "[SEP]", "strip_accents": None,
        "tokenize_chinese_chars": True, "tokenizer_class": "BertTokenizer", "unk_token": "[UNK]"})
    write_json(os.path.join(folder, "special_tokens_map.json"), {
        "cls_token": "[CLS]", "mask_token": "[MASK]", "pad_token": "[PAD]", "sep_token": "[SEP]",
        "unk_token": "[UNK]"})


def bert_config(arch, vocab_size, eps, type_vocab, dtype, extra=None):
    c = {
        "architectures": [arch], "attention_probs_dropout_prob": 0.1, "classifier_dropout": None,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": HIDDEN,
        "initializer_range": 0.02, "intermediate_size": INTER, "layer_norm_eps": eps,
        "max_position_embeddings": MAX_POS, "model_type": "bert", "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS, "pad_token_id": 0, "position_embedding_type": "absolute",
        "torch_dtype": dtype, "transformers_version": "4.34.0", "type_vocab_size": type_vocab,
        "use_cache": True, "vocab_size": vocab_size,
    }
    c.update(extra or {})
    return c


# ----------------------------------------------------------------------------- golden


def make_sequences(seed, type_pattern, with_task):
    rng = np.random.default_rng(seed)
    rand = lambda n: [int(x) for x in rng.integers(1, NVOCAB, n)]  # any line but [PAD]
    seqs = [
        {"input_ids": [CLS] + rand(5) + [SEP], "token_type_ids": [0] * 7},
        {"input_ids": [CLS] + rand(10) + [SEP], "token_type_ids": type_pattern},
        {"input_ids": rand(1), "token_type_ids": [0]},
    ]
    if with_task:
        seqs[0]["task_type_ids"] = [0] * 7
        seqs[1]["task_type_ids"] = [i % 3 for i in range(12)]
        seqs[2]["task_type_ids"] = [0]
    return seqs


def run(model, seqs, dtype):
    """One sequence at a time, no padding."""
    outs = []
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s["input_ids"]])
            types = torch.tensor([s["token_type_ids"]])
            tasks = torch.tensor([s.get("task_type_ids", [0] * len(s["input_ids"]))])
            o = model(ids, types, tasks, torch.ones_like(ids))
            outs.append({k: v[0] for k, v in o.items()})
    return outs


def run_batched(model, seqs):
    L = max(len(s["input_ids"]) for s in seqs)
    pad = lambda v: v + [0] * (L - len(v))
    ids = torch.tensor([pad(s["input_ids"]) for s in seqs])
    types = torch.tensor([pad(s["token_type_ids"]) for s in seqs])
    tasks = torch.tensor([pad(s.get("task_type_ids", [0] * len(s["input_ids"]))) for s in seqs])
    valid = torch.tensor([[1] * len(s["input_ids"]) + [0] * (L - len(s["input_ids"])) for s in seqs])
    with torch.no_grad():
        o = model(ids, types, tasks, valid)
    res = []
    for b, s in enumerate(seqs):
        n = len(s["input_ids"])
        r = {}
        for k, v in o.items():
            r[k] = v[b, :n] if k in ("last_hidden_state", "mlm_logits", "uie_start_prob", "uie_end_prob") else v[b]
        res.append(r)
    return res


def max_diff(a, b):
    return max(float((x[k].double() - y[k].double()).abs().max()) for x, y in zip(a, b) for k in x)


def r9(x):
    if isinstance(x, list):
        return [r9(v) for v in x]
    return float(f"{x:.9g}")


def golden(name, source_format, make_model, sd, seqs, notes, stats):
    m64 = load(make_model(), sd, torch.float64)
    m32 = load(make_model(), sd, torch.float32)
    o64 = run(m64, seqs, torch.float64)
    o32 = run(m32, seqs, torch.float32)
    d32 = max_diff(o64, o32)
    ob = run_batched(m64, seqs)
    dbatch = max_diff(o64, ob)
    ob32 = run_batched(m32, seqs)
    dbatch32 = max_diff(o32, ob32)
    assert d32 < TOL, (name, d32)
    assert dbatch < TOL and dbatch32 < TOL, (name, dbatch, dbatch32)
    maxabs = max(float(v.abs().max()) for o in o64 for v in o.values())
    stats[name] = {"fp32_vs_fp64": d32, "batched_vs_single_fp64": dbatch, "batched_vs_single_fp32": dbatch32,
                   "max_abs_output": maxabs}
    out_seqs = []
    for s, o in zip(seqs, o64):
        e = dict(s)
        for k in sorted(o):
            e[k] = r9(o[k].tolist())
        out_seqs.append(e)
    return {
        "model": name,
        "source_format": source_format,
        "reference": "own PyTorch modules (tools/make_tiny_models.py), float64 on the stored weights "
                     "upcast to float64, one sequence per run, no padding, position_ids 0..L-1",
        "notes": notes,
        "fp32_vs_fp64_max_abs_diff": float(f"{d32:.3g}"),
        "sequences": out_seqs,
    }


def write_golden(folder, g):
    with open(os.path.join(folder, "golden.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(g, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- models

BERT_TYPES = [0] * 5 + [1] * 7


def make_tiny_bert(out, stats):
    folder = os.path.join(out, "tiny-bert")
    mk = lambda: Model(NVOCAB, 2, 0, 1e-12, ["pooler"])
    sd = random_weights(mk(), 1001, np.float32)
    names = bert_names("")
    tensors = {names[k]: v for k, v in sd.items()}
    write_common(folder, bert_config("BertModel", NVOCAB, 1e-12, 2, "float32"), False)
    path = os.path.join(folder, "model.safetensors")
    write_safetensors(path, tensors, {"format": "pt"})
    back, _ = read_safetensors(path)
    assert all(np.array_equal(back[n], tensors[n]) for n in tensors) and len(back) == len(tensors)
    seqs = make_sequences(11, BERT_TYPES, False)
    write_golden(folder, golden("tiny-bert", "safetensors F32, HF BertModel names without prefix", mk, sd, seqs,
                                "pooler_output = tanh(pooler.dense(CLS))", stats))


def make_tiny_ernie(out, stats):
    folder = os.path.join(out, "tiny-ernie")
    rows = NVOCAB + 8  # like uie-base: 40000 rows for 39980 lines
    mk = lambda: Model(rows, 4, 3, 1e-5, ["pooler"])
    sd = random_weights(mk(), 1002, np.float16)
    names = bert_names("ernie.")
    tensors = {names[k]: v for k, v in sd.items()}
    cfg = bert_config("ErnieModel", rows, 1e-5, 4, "float16",
                      {"model_type": "ernie", "use_task_id": True, "task_type_vocab_size": 3})
    write_common(folder, cfg, True)
    path = os.path.join(folder, "model.safetensors")
    write_safetensors(path, tensors, {"format": "pt"})
    back, _ = read_safetensors(path)
    assert all(np.array_equal(back[n], tensors[n]) for n in tensors) and len(back) == len(tensors)
    seqs = make_sequences(12, [0] * 4 + [1] * 4 + [2] * 2 + [3] * 2, True)
    write_golden(folder, golden("tiny-ernie", "safetensors F16, HF ErnieModel names with prefix 'ernie.'", mk, sd,
                                seqs, f"config vocab_size {rows} > {NVOCAB} vocab.txt lines; weights F16, golden from "
                                "them upcast; embeddings = word + position + token_type + task_type; "
                                "pooler_output = tanh(ernie.pooler.dense(CLS))", stats))


def torch_save(path, sd):
    torch.save(sd, path)


def make_tiny_mlm(out, stats):
    folder = os.path.join(out, "tiny-mlm")
    mk = lambda: Model(NVOCAB, 2, 0, 1e-12, ["mlm"])
    sd = random_weights(mk(), 1003, np.float16)
    names = bert_names("bert.")
    tsd = {}
    for k, v in sd.items():
        if k.startswith("emb.") or k.startswith("layers."):
            tsd[names[k]] = torch.from_numpy(v.copy())
    # HF BertForMaskedLM state_dict order: bert.*, cls.predictions.bias, transform.*, decoder.weight
    tsd["cls.predictions.bias"] = torch.from_numpy(sd["mlm_bias"].copy())
    tsd["cls.predictions.transform.dense.weight"] = torch.from_numpy(sd["mlm_dense.weight"].copy())
    tsd["cls.predictions.transform.dense.bias"] = torch.from_numpy(sd["mlm_dense.bias"].copy())
    tsd["cls.predictions.transform.LayerNorm.weight"] = torch.from_numpy(sd["mlm_ln.weight"].copy())
    tsd["cls.predictions.transform.LayerNorm.bias"] = torch.from_numpy(sd["mlm_ln.bias"].copy())
    tsd["cls.predictions.decoder.weight"] = tsd["bert.embeddings.word_embeddings.weight"]  # tied: same tensor
    write_common(folder, bert_config("BertForMaskedLM", NVOCAB, 1e-12, 2, "float16"), False)
    path = os.path.join(folder, "pytorch_model.bin")
    torch_save(path, tsd)
    back = torch.load(path)
    assert list(back) == list(tsd) and all(torch.equal(back[k], tsd[k]) and back[k].dtype == torch.float16 for k in tsd)
    assert back["cls.predictions.decoder.weight"].data_ptr() == back["bert.embeddings.word_embeddings.weight"].data_ptr()
    seqs = make_sequences(13, BERT_TYPES, False)
    write_golden(folder, golden("tiny-mlm", "pytorch_model.bin (torch zip), F16, BertForMaskedLM, tied decoder", mk,
                                sd, seqs, "mlm_logits = LayerNorm(gelu(transform.dense(h))) @ word_embeddings^T + "
                                "cls.predictions.bias; no pooler in this checkpoint", stats))


def make_tiny_nli(out, stats):
    folder = os.path.join(out, "tiny-nli")
    mk = lambda: Model(NVOCAB, 2, 0, 1e-12, ["pooler", "classifier"])
    sd = random_weights(mk(), 1004, np.float32)
    names = bert_names("bert.")
    names["classifier.weight"] = "classifier.weight"
    names["classifier.bias"] = "classifier.bias"
    tsd = {names[k]: torch.from_numpy(v.copy()) for k, v in sd.items()}
    id2label = {"0": "contradiction", "1": "entailment", "2": "neutral"}
    cfg = bert_config("BertForSequenceClassification", NVOCAB, 1e-12, 2, "float32",
                      {"id2label": id2label, "label2id": {v: int(k) for k, v in id2label.items()}})
    write_common(folder, cfg, False)
    path = os.path.join(folder, "pytorch_model.bin")
    torch_save(path, tsd)
    back = torch.load(path)
    assert list(back) == list(tsd) and all(torch.equal(back[k], tsd[k]) for k in tsd)
    seqs = make_sequences(14, BERT_TYPES, False)
    write_golden(folder, golden("tiny-nli", "pytorch_model.bin (torch zip), F32, BertForSequenceClassification", mk,
                                sd, seqs, "classifier_logits = classifier(tanh(bert.pooler.dense(CLS))); labels "
                                "0 contradiction, 1 entailment, 2 neutral", stats))


def make_tiny_uie(out, stats):
    folder = os.path.join(out, "tiny-uie")
    mk = lambda: Model(NVOCAB, 2, 3, 1e-12, ["uie"])
    sd = random_weights(mk(), 1005, np.float32)
    names = paddle_uie_names()
    tensors = {}
    for k, v in sd.items():
        tensors[names[k]] = np.ascontiguousarray(v.T) if is_linear_weight(k) else v  # Paddle [in, out]
    cfg = {
        "model_type": "uie", "architectures": ["UIE"], "vocab_size": NVOCAB, "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "intermediate_size": INTER,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": MAX_POS, "type_vocab_size": 2, "use_task_id": True,
        "task_type_vocab_size": 3, "layer_norm_eps": 1e-12, "pad_token_id": 0, "initializer_range": 0.02,
        "weights_dtype": "float32",
        "linear_weight_layout": "Paddle: every Linear weight (q/k/v/out_proj, linear1, linear2, linear_start, "
                                "linear_end) is stored [in_features, out_features]; y = x @ W + b",
        "has_pooler": False, "normalize_before": False, "task_type_ids_at_inference": 0, "max_seq_len": MAX_POS,
        "position_prob": 0.5,
    }
    write_common(folder, cfg, True)
    path = os.path.join(folder, "model.safetensors")
    write_safetensors(path, tensors, {"format": "paddle-layout", "linear_weight_layout": "in_out"})
    back, meta = read_safetensors(path)
    assert meta == {"format": "paddle-layout", "linear_weight_layout": "in_out"}
    assert back["linear_start.weight"].shape == (HIDDEN, 1)
    assert back["encoder.encoder.layers.0.linear1.weight"].shape == (HIDDEN, INTER)
    assert all(np.array_equal(back[n], tensors[n]) for n in tensors) and len(back) == len(tensors)
    seqs = make_sequences(15, BERT_TYPES, True)
    write_golden(folder, golden("tiny-uie", "safetensors F32, PaddleNLP UIE names, Linear weights [in, out]", mk, sd,
                                seqs, "uie_start_prob = sigmoid(h @ linear_start.weight + linear_start.bias) per "
                                "token, same for end; embeddings include task_type", stats))


# ----------------------------------------------------------------------------- ONNX int8


def quantize_weight(w_in_out):
    """onnxruntime dynamic quantization, per_channel, reduce_range, QInt8, symmetric:
    per output column scale = max|w| / 64, zero point 0, q in [-64, 64]."""
    absmax = np.abs(w_in_out).max(axis=0).astype(np.float32)
    scale = (absmax / np.float32(64.0)).astype(np.float32)
    q = np.clip(np.round(w_in_out / scale), -64, 64).astype(np.int8)
    return q, scale, np.zeros(w_in_out.shape[1], np.int8)


def quantize_table(t):
    """uint8 per tensor, zero point 128 (symmetric): scale = 2 max|t| / 255."""
    absmax = np.float32(np.abs(t).max())
    scale = np.float32(2.0 * absmax / 255.0)
    q = np.clip(np.round(t / scale) + 128, 0, 255).astype(np.uint8)
    return q, scale, np.uint8(128)


def make_tiny_onnx(out, stats, template):
    try:
        import onnx
        from onnx import numpy_helper, helper
    except ImportError:
        print("SKIP tiny-bert-onnx-int8: python3-onnx missing", file=sys.stderr)
        return
    if not os.path.exists(template):
        print(f"SKIP tiny-bert-onnx-int8: template {template} missing", file=sys.stderr)
        return
    folder = os.path.join(out, "tiny-bert-onnx-int8")
    mk = lambda: Model(NVOCAB, 2, 0, 1e-12, [])
    sd = random_weights(mk(), 1006, np.float32)

    src = onnx.load(template)
    g = src.graph
    # node names of bge's MatMulInteger weights, per (layer, module)
    mods = {"attention/self/query": "attn.q", "attention/self/key": "attn.k", "attention/self/value": "attn.v",
            "attention/output/dense": "attn.o", "intermediate/dense": "ffn_in", "output/dense": "ffn_out"}
    wname = {}  # initializer base name -> canonical linear
    for n in g.node:
        if n.op_type == "MatMulInteger":
            parts = n.name.split("/")  # /encoder/layer.0/attention/self/query/MatMul_quant
            layer = int(parts[2].split(".")[1])
            mod = "/".join(parts[3:-1])
            wname[n.input[1][:-len("_quantized")]] = (layer, mods[mod])
    drop_layers = [f"layer.{i}" for i in range(LAYERS, 64)]

    def dropped(s):
        return any(f"/encoder/{d}/" in s or f"encoder.{d}." in s for d in drop_layers)

    last_out = f"/encoder/layer.{LAYERS - 1}/output/LayerNorm/Add_1_output_0"
    dq = {}  # canonical name -> dequantized float32 array (torch layout)
    inits = []
    for t in g.initializer:
        name = t.name
        base = name.rsplit("_", 1)[0] if name.endswith(("_scale", "_quantized")) else name
        if name.endswith("_zero_point"):
            base = name[:-len("_zero_point")]
        if base in wname:
            layer, mod = wname[base]
            if layer >= LAYERS:
                continue
            w = sd[f"layers.{layer}.{mod}.weight"].T  # [in, out]
            q, s, z = quantize_weight(w)
            dq[f"layers.{layer}.{mod}.weight"] = (q.astype(np.float32) * s).T
            arr = {"_quantized": q, "_scale": s, "_zero_point": z}[name[len(base):]]
        elif name.startswith("embeddings.") and name.endswith(("_quantized", "_scale", "_zero_point")):
            tbl = name.split(".")[1]  # word_embeddings
            canon = {"word_embeddings": "emb.word.weight", "position_embeddings": "emb.pos.weight",
                     "token_type_embeddings": "emb.ttype.weight"}[tbl]
            q, s, z = quantize_table(sd[canon])
            dq[canon] = (q.astype(np.float32) - np.float32(128)) * s
            suffix = name[len(f"embeddings.{tbl}.weight"):]
            arr = {"_quantized": q, "_scale": np.array(s, np.float32), "_zero_point": np.array(z, np.uint8)}[suffix]
        else:
            if dropped(name):
                continue
            canon = {v: k for k, v in bert_names("").items()}[name]
            arr = sd[canon]
            dq[canon] = arr
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))

    d = HIDDEN // HEADS
    new_const, pos_const = {}, None
    nodes = []
    for n in g.node:
        if dropped(n.name) or any(dropped(o) for o in n.output):
            continue
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        if n2.op_type == "Constant":
            v = numpy_helper.to_array(n2.attribute[0].t)
            nv = None
            if v.ndim == 2 and v.shape[0] == 1 and v.shape[1] == 512:  # position ids 0..511
                pos_const = n2.output[0]
                nv = np.arange(MAX_POS, dtype=v.dtype).reshape(1, MAX_POS)
            elif "/attention/self/" in n2.name and v.dtype == np.int64 and v.shape == (1,):
                nv = {8: np.array([HEADS]), 64: np.array([d]), 512: np.array([HIDDEN])}.get(int(v[0]))
                assert nv is not None, (n2.name, v)
            elif "/attention/self/" in n2.name and v.dtype == np.float32 and v.shape == () and float(v) == 8.0:
                nv = np.array(math.sqrt(d), np.float32)
            if nv is not None:
                nv = nv.astype(v.dtype)
                n2.attribute[0].t.CopyFrom(numpy_helper.from_array(nv, n2.attribute[0].t.name))
                new_const[n2.name] = nv.tolist()
        for i, o in enumerate(n2.output):
            if o == last_out:
                n2.output[i] = "last_hidden_state"
        nodes.append(n2)
    # drop what only fed the removed layers (e.g. the DynamicQuantizeLinear of the last kept
    # output, which bge names after layer LAYERS-1 but which feeds layer LAYERS)
    needed, kept = {"last_hidden_state"}, []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(n.input)
    nodes = kept[::-1]
    assert not any(last_out in n.input for n in nodes)
    used_inits = {i for n in nodes for i in n.input}
    assert all(t.name in used_inits for t in inits), [t.name for t in inits if t.name not in used_inits]

    def fix_vi(vi):
        v2 = onnx.ValueInfoProto()
        v2.CopyFrom(vi)
        for dim in v2.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value == 512:  # hidden, or max positions
                dim.dim_value = MAX_POS if vi.name == pos_const else HIDDEN
        return v2

    names_alive = {o for n in nodes for o in n.output} | {i.name for i in g.input}
    vis = [fix_vi(v) for v in g.value_info if v.name in names_alive and v.name != last_out]
    graph = helper.make_graph(nodes, g.name, [onnx.ValueInfoProto.FromString(i.SerializeToString()) for i in g.input],
                              [fix_vi(o) for o in g.output], inits, value_info=vis)
    model = onnx.ModelProto()
    model.CopyFrom(src)
    model.graph.CopyFrom(graph)
    onnx.checker.check_model(model, full_check=True)

    os.makedirs(os.path.join(folder, "onnx"), exist_ok=True)
    with open(os.path.join(folder, "onnx", "model_quantized.onnx"), "wb") as f:
        f.write(model.SerializeToString())
    write_common(folder, bert_config("BertModel", NVOCAB, 1e-12, 2, "float32"), False)
    write_json(os.path.join(folder, "quantize_config.json"), {
        "per_channel": True, "reduce_range": True,
        "per_model_config": {"model": {"op_types": sorted({n.op_type for n in src.graph.node
                                                            if n.op_type not in ("MatMulInteger", "DynamicQuantizeLinear",
                                                                                 "DequantizeLinear")} | {"MatMul"}),
                                       "weight_type": "QInt8"}}})
    stats["tiny-bert-onnx-int8 constants rewritten"] = len(new_const)
    seqs = make_sequences(16, BERT_TYPES, False)
    # self-check: run the written graph (int8 activations, as onnxruntime does) and compare it
    # with the float reference on the dequantized weights; not stored.
    ref = run(load(mk(), dq, torch.float64), seqs, torch.float64)
    worst = 1.0
    for s_, r in zip(seqs, ref):
        ids = np.array([s_["input_ids"]], np.int64)
        o = run_onnx_numpy(model, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                   "token_type_ids": np.array([s_["token_type_ids"]], np.int64)})
        h = o["last_hidden_state"][0].astype(np.float64)
        g_ = r["last_hidden_state"].numpy()
        cos = (h * g_).sum(-1) / np.linalg.norm(h, axis=-1) / np.linalg.norm(g_, axis=-1)
        worst = min(worst, float(cos.min()))
    assert worst > 0.99, worst
    stats["tiny-bert-onnx-int8 numpy-interpreter (int8 activations) vs golden, min per-token cosine"] = worst
    assert set(dq) == set(sd), set(sd) ^ set(dq)
    write_golden(folder, golden("tiny-bert-onnx-int8", "ONNX int8 (onnxruntime dynamic quantization, bge-small-zh "
                                "graph)", mk, dq, seqs,
                                "golden = fp32/fp64 activations on the DEQUANTIZED weights "
                                "(w = q * scale[out] for MatMulInteger weights; (q - 128) * scale for the uint8 "
                                "embedding tables), like bge's cls_fp32_activations; onnxruntime's own output "
                                "differs by its dynamic uint8 activation quantization", stats))


def run_onnx_numpy(model, feeds):
    """Minimal numpy interpreter for the ops of the bge/tiny int8 graph, with onnxruntime's
    semantics (DynamicQuantizeLinear: uint8, scale = (max(0, x) - min(0, x)) / 255, round half
    to even). Used only as a self-check of the written graph."""
    import onnx
    from onnx import numpy_helper, helper
    env = dict(feeds)
    for t in model.graph.initializer:
        env[t.name] = numpy_helper.to_array(t)
    f32 = np.float32
    for n in model.graph.node:
        a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
        x = [env[i] if i else None for i in n.input]
        op = n.op_type
        if op == "Constant":
            y = [numpy_helper.to_array(a["value"])]
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            f = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power}[op]
            r = f(x[0], x[1])
            if op == "Div" and x[0].dtype.kind == "i":
                r = x[0] // x[1]
            y = [r.astype(np.result_type(x[0], x[1]))]
        elif op == "Sqrt":
            y = [np.sqrt(x[0])]
        elif op == "Erf":
            y = [torch.erf(torch.from_numpy(np.ascontiguousarray(x[0]))).numpy()]
        elif op == "Unsqueeze":
            r = x[0]
            for ax in sorted(a["axes"]):
                r = np.expand_dims(r, ax)
            y = [r]
        elif op == "Shape":
            y = [np.array(x[0].shape, np.int64)]
        elif op == "Gather":
            y = [np.take(x[0], x[1], axis=a.get("axis", 0))]
        elif op == "Cast":
            y = [x[0].astype(onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[a["to"]])]
        elif op == "Slice":
            data, starts, ends = x[0], x[1], x[2]
            axes = x[3] if len(x) > 3 else range(len(starts))
            steps = x[4] if len(x) > 4 else [1] * len(starts)
            sl = [slice(None)] * data.ndim
            for st, en, ax, sp in zip(starts, ends, axes, steps):
                sl[int(ax)] = slice(int(st), int(en), int(sp))
            y = [data[tuple(sl)]]
        elif op == "ReduceMean":
            y = [x[0].mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1))).astype(x[0].dtype)]
        elif op == "Concat":
            y = [np.concatenate(x, axis=a["axis"])]
        elif op == "Reshape":
            shp = [x[0].shape[i] if v == 0 else int(v) for i, v in enumerate(x[1])]
            y = [x[0].reshape(shp)]
        elif op == "Transpose":
            y = [np.transpose(x[0], a["perm"])]
        elif op == "MatMul":
            y = [np.matmul(x[0], x[1])]
        elif op == "Softmax":
            e = np.exp(x[0] - x[0].max(axis=a["axis"], keepdims=True))
            y = [(e / e.sum(axis=a["axis"], keepdims=True)).astype(x[0].dtype)]
        elif op == "DequantizeLinear":
            y = [((x[0].astype(np.int32) - np.int32(x[2])).astype(f32) * x[1]).astype(f32)]
        elif op == "DynamicQuantizeLinear":
            v = x[0]
            lo, hi = min(f32(0), v.min()), max(f32(0), v.max())
            scale = f32((hi - lo) / f32(255))
            zp = np.uint8(np.clip(np.round(-lo / scale), 0, 255))
            q = np.clip(np.round(v / scale) + zp, 0, 255).astype(np.uint8)
            y = [q, np.array(scale, f32), np.array(zp, np.uint8)]
        elif op == "MatMulInteger":
            A = x[0].astype(np.int64) - np.int64(x[2])
            Bm = x[1].astype(np.int64) - x[3].astype(np.int64)
            y = [np.matmul(A, Bm).astype(np.int32)]
        else:
            raise NotImplementedError(op)
        for name, v in zip(n.output, y):
            env[name] = np.asarray(v)
    return {o.name: env[o.name] for o in model.graph.output}


# ----------------------------------------------------------------------------- main


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "tiny"))
    ap.add_argument("--bge-onnx", default=os.path.join(here, "..", "..", "shared", "models", "bge-small-zh-v1.5",
                                                       "onnx", "model_quantized.onnx"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    stats = {}
    make_tiny_bert(a.out, stats)
    make_tiny_ernie(a.out, stats)
    make_tiny_mlm(a.out, stats)
    make_tiny_nli(a.out, stats)
    make_tiny_uie(a.out, stats)
    make_tiny_onnx(a.out, stats, a.bge_onnx)
    for k, v in stats.items():
        print(k, v)
    for root, _, files in sorted(os.walk(a.out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            print(f"{hashlib.sha256(open(p, 'rb').read()).hexdigest()}  {os.path.getsize(p):8d}  "
                  f"{os.path.relpath(p, a.out)}")


if __name__ == "__main__":
    main()
