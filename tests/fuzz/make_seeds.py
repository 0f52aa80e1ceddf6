#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora in tests/fuzz/corpus/<target>/ (run from anywhere;
plain Python 3, no torch or onnx: the torch.save and ONNX seeds are copies of the reader
fixtures in tests/data/readers). Small on purpose: a seed shows the fuzzer each format's shape,
the fuzzer finds the rest."""
import json, os, shutil, struct

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(here, "..", "data")
corpus = os.path.join(here, "corpus")
SEP = b"\n----\n"  # fuzz_support.hpp split_parts()


def write(target, name, content):
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())


def read(*path):
    with open(os.path.join(*path), "rb") as f:
        return f.read()


# --- .tbw: a 1-layer encoder and a masked-LM with int8 matrices (docs/weight-format.md); no
# .tbw extension, which .gitignore ignores ---------------------------------------------------------
def f32(values):
    return struct.pack("<%df" % len(values), *values)


def tbw(architecture, int8):
    vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##s\n你\n".encode()
    hidden, ffn, words, positions = 4, 4, 8, 8
    tensors = []  # (name, dtype, shape, bytes)

    def matrix(name, rows, cols):
        if int8:
            raw = bytes((i * 37) % 256 for i in range(rows * cols))
            tensors.append((name, "i8", [rows, cols], raw))
            tensors.append((name + "_scale", "f32", [rows], f32([0.01] * rows)))
        else:
            raw = f32([0.01 * (i % 7) for i in range(rows * cols)])
            tensors.append((name, "f32", [rows, cols], raw))

    def vector(name, n, value=0.0):
        tensors.append((name, "f32", [n], f32([value] * n)))

    def linear(prefix, rows, cols):
        matrix(prefix + ".weight", rows, cols)
        vector(prefix + ".bias", rows)

    def norm(prefix):
        vector(prefix + ".weight", hidden, 1.0)
        vector(prefix + ".bias", hidden)

    matrix("embeddings.word_embeddings", words, hidden)
    matrix("embeddings.position_embeddings", positions, hidden)
    matrix("embeddings.token_type_embeddings", 2, hidden)
    norm("embeddings.norm")
    linear("layers.0.attention.qkv", 3 * hidden, hidden)
    linear("layers.0.attention.output", hidden, hidden)
    norm("layers.0.attention.norm")
    linear("layers.0.ffn.intermediate", ffn, hidden)
    linear("layers.0.ffn.output", hidden, ffn)
    norm("layers.0.ffn.norm")
    if architecture == "masked_lm":
        linear("mlm.transform", hidden, hidden)
        norm("mlm.norm")
        vector("mlm.decoder.bias", words)
    tensors.append(("tokenizer.vocab", "u8", [len(vocab)], vocab))
    config = {"name": "seed", "architecture": architecture, "vocab_size": words,
              "hidden_size": hidden, "num_layers": 1, "num_heads": 1, "intermediate_size": ffn,
              "max_position_embeddings": positions, "type_vocab_size": 2,
              "layer_norm_eps": 1e-12, "has_pooler": False, "pooling": "cls", "normalize": True}
    tokenizer = {"do_lower_case": True, "strip_accents": None, "model_max_length": positions}
    entries, blob = [], b""
    for name, dtype, shape, raw in tensors:
        blob += b"\0" * (-len(blob) % 64)
        entries.append({"name": name, "dtype": dtype, "shape": shape, "offset": len(blob),
                        "bytes": len(raw)})
        blob += raw
    header = json.dumps({"config": config, "tokenizer": tokenizer, "tensors": entries,
                         "metadata": {}}, separators=(",", ":")).encode()
    header += b" " * (-(24 + len(header)) % 64)
    return b"TINYBERT" + struct.pack("<IIQ", 1, 64, len(header)) + header + blob


write("fuzz_tbw", "encoder_f32", tbw("encoder", False))
write("fuzz_tbw", "masked_lm_i8", tbw("masked_lm", True))

# --- safetensors ---------------------------------------------------------------------------------
def safetensors(entries, metadata=None):
    header, blob = {}, b""
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + blob


write("fuzz_safetensors", "dtypes.safetensors", safetensors([
    ("bert.embeddings.word_embeddings.weight", "F32", [2, 2], f32([1, 2, 3, 4])),
    ("f16", "F16", [2], struct.pack("<2e", 1.0, -2.5)),
    ("bf16", "BF16", [1, 2], b"\x80\x3f\x00\x40"),
    ("i8", "I8", [3], b"\x80\xff\x7f"),
    ("u8", "U8", [0], b"")], {"format": "pt"}))
write("fuzz_safetensors", "empty.safetensors", safetensors([]))

# --- torch.save and ONNX: the reader fixtures -------------------------------------------------
for name in ["torch_small.pt", "torch_nested.pt", "torch_legacy.pt"]:
    write("fuzz_pytorch_bin", name, read(data, "readers", name))
for name in ["onnx_small.onnx", "onnx_external.onnx"]:
    write("fuzz_onnx", name, read(data, "readers", name))

# --- configs: config.json, tokenizer_config.json, configuration.json ----------------------------
for folder, name in [("tiny/tiny-bert", "bert"), ("tiny/tiny-nli", "nli"),
                     ("tiny/tiny-ernie", "ernie"), ("modelscope/siamese-uie", "siamese"),
                     ("modelscope/structbert-zero-shot", "zero_shot")]:
    parts = [json.dumps(json.loads(read(data, folder, f)), separators=(",", ":")).encode()
             for f in ["config.json", "tokenizer_config.json", "configuration.json"]
             if os.path.exists(os.path.join(data, folder, f))]
    write("fuzz_configs", name + ".json", SEP.join(parts))
# Reproducer of a finding: a config.json that is not an object, wrong-typed fields.
write("fuzz_configs", "finding_not_object.json",
      b'"BertModel"' + SEP + b'{"do_lower_case": "yes"}' + SEP + b'{"task": 3}')

# --- tokenizer: option byte, max-length byte, truncation byte, text [SEP text] -------------------
write("fuzz_tokenizer", "mixed",
      b"\x11\x00\x00" + "Hello, world! 你好 [MASK] héllo 2024。".encode())
write("fuzz_tokenizer", "pair_truncated",
      b"\x1b\x0a\x00" + "the cat sat on the mat".encode() + SEP +
      "水 hellos he##llo ﬁ İstanbul".encode())
write("fuzz_tokenizer", "pair_only_second", b"\x30\x08\x02" + "a b".encode() + SEP +
      "xxxxxxxx bbbb aab\u0301\u3000\u200b\t\x01".encode())

# --- UIE schemas: option byte, JSON -----------------------------------------------------------
for i, schema in enumerate([
        "人名", ["人名", "地址"], [{"竞赛名称": ["主办方", "承办方"]}],
        {"评价维度": ["观点词", "情感倾向[正向，负向]"]},
        {"产品名称": None, "属性词": {"情感词": None}}]):
    write("fuzz_uie_schema", "schema%d.json" % i,
          bytes([i]) + json.dumps(schema, ensure_ascii=False).encode())

# --- request bodies: endpoint byte (0 classify, 1 fill-mask, 2 extract, 3 embeddings), body -----
bodies = [
    (0, {"input": ["今天天气很好", "hello world"], "labels": ["天气", "体育"],
         "model": "bert"}),
    (0, {"input": "北京很冷", "labels": "天气,体育，政治", "multi_label": True,
         "template": "这是{}",
         "calibrate": True, "temperature": 0.5}),
    (0, {"input": ["hello"], "labels": ["a", "b", "c"], "model": "nli", "threshold": 0.3,
         "template": ["{}", "about {}"]}),
    (1, {"input": ["北京是[MASK]国的首都", "[MASK][MASK] hello"], "top_k": 3,
         "attribution": 2,
         "joint": True}),
    (2, {"input": ["2024年张三在北京参加了比赛"],
         "schema": ["人名", {"竞赛名称": ["主办方"]}],
         "model": "uie", "threshold": 0.1}),
    (2, {"input": "张三在北京", "schema": {"人物": None, "地点": {"位于": None}},
         "model": "siamese",
         "format": "modelscope", "threshold": -2}),
    (3, {"input": ["a", "你好 world"], "normalize": True}),
    (3, {"input": "x", "normalize": False, "model": "bert"}),
]
for i, (endpoint, body) in enumerate(bodies):
    write("fuzz_request_bodies", "body%d.json" % i,
          bytes([endpoint]) + json.dumps(body, ensure_ascii=False).encode())
# Reproducers of findings (README.md), kept as seeds: a body that is not UTF-8, a number
# beyond double.
write("fuzz_request_bodies", "finding_not_utf8.json",
      b'\x00{"input": ["hello wor\xe4\xe4ld"], "labels": ["a", "b"]}')
write("fuzz_request_bodies", "finding_1e400.json", b'\x00{"input":1e400, "labels": ["a"]}')
