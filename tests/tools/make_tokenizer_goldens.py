"""Writes tests/data/tokenizer_goldens.json: BERT WordPiece goldens with offsets.

An independent pure-Python reference of HF's fast BERT tokenizer (tokenizers' BertNormalizer +
BertPreTokenizer + WordPiece + TemplateProcessing + truncate_encodings), with alignment
tracking like NormalizedString: every normalised character remembers the index of the
original character it came from. Only `unicodedata` is used.

Run: /usr/bin/python3 tests/tools/make_tokenizer_goldens.py  (from the repository root; needs
../shared/models for the real vocabs).

Where HF's slow (Python) and fast (Rust) tokenizers differ, this follows the fast one:
  * control = Cc, Cf, Co, Cn (slow: Cc, Cf); whitespace = the White_Space property;
  * strip accents (NFD, drop Mn) runs before lower-casing, one character at a time; no NFC and
    no final-sigma rule (slow lower-cases whole words with str.lower);
  * CJK range Extension E starts at U+2B920 (slow: U+2B820);
  * longest_first truncation splits the budget as truncate_encodings does;
  * a duplicate vocab line maps to its last id (both slow and fast).
Goldens avoid characters whose category changed after Unicode 14 (Python 3.11's unicodedata),
since the C++ side uses utf8proc's tables.
"""
import json
import os
import sys
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_MODELS = os.path.join(ROOT, "..", "shared", "models")
OUT = os.path.join(ROOT, "tests", "data", "tokenizer_goldens.json")


# ---- character classes (as tokenizers' bert.rs) ------------------------------------------
def is_whitespace(ch):
    return ch in "\t\n\x0b\x0c\r\x85" or unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def is_control(ch):
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cn", "Cs")


def is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_chinese_char(ch):
    cp = ord(ch)
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B920 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


# ---- normalisation as a list of (char, original index) -----------------------------------
def normalize(text, begin, end, opts):
    chars = [(text[i], i) for i in range(begin, end)]
    if opts["clean_text"]:
        chars = [(" " if is_whitespace(c) else c, i) for c, i in chars
                 if not (ord(c) == 0 or ord(c) == 0xFFFD or is_control(c))]
    if opts["tokenize_chinese_chars"]:
        out = []
        for c, i in chars:
            out.extend([(" ", i), (c, i), (" ", i)] if is_chinese_char(c) else [(c, i)])
        chars = out
    if opts["strip_accents"]:
        out = []
        for c, i in chars:
            out.extend((d, i) for d in unicodedata.normalize("NFD", c)
                       if unicodedata.category(d) != "Mn")
        chars = out
    if opts["lowercase"]:
        # one character at a time, like Rust's char::to_lowercase: 'İ' -> 'i' + U+0307
        chars = [(lc, i) for c, i in chars for lc in c.lower()]
    return chars


def pre_tokenize(chars):
    words, cur = [], []
    for item in chars:
        c = item[0]
        if is_whitespace(c):
            if cur:
                words.append(cur)
            cur = []
        elif is_punctuation(c):
            if cur:
                words.append(cur)
            words.append([item])
            cur = []
        else:
            cur.append(item)
    if cur:
        words.append(cur)
    return words


def wordpiece(word, vocab, opts):
    """word: list of (char, original index) -> list of (token, id, start, end)."""
    unk = opts["unk_token"]
    span = (word[0][1], word[-1][1] + 1)
    if len(word) > opts["max_input_chars_per_word"]:
        return [(unk, vocab[unk]) + span]
    s = "".join(c for c, _ in word)
    out, start = [], 0
    while start < len(s):
        end = len(s)
        found = None
        while start < end:
            sub = ("##" if start > 0 else "") + s[start:end]
            if sub in vocab:
                found = sub
                break
            end -= 1
        if found is None:
            return [(unk, vocab[unk]) + span]
        out.append((found, vocab[found], word[start][1], word[end - 1][1] + 1))
        start = end
    return out


def split_specials(text, specials):
    """Leftmost-longest match of special tokens on the original text."""
    pieces, pos = [], 0
    while True:
        best = None
        for sp in specials:
            j = text.find(sp, pos)
            if j >= 0 and (best is None or j < best[0] or (j == best[0] and len(sp) > len(best[1]))):
                best = (j, sp)
        if best is None:
            pieces.append(("text", pos, len(text)))
            return pieces
        pieces.append(("text", pos, best[0]))
        pieces.append(("special", best[0], best[0] + len(best[1])))
        pos = best[0] + len(best[1])


def tokenize(text, vocab, opts):
    specials = [opts[k] for k in ("unk_token", "cls_token", "sep_token", "pad_token", "mask_token")
                if opts[k] in vocab]
    out = []
    for kind, b, e in split_specials(text, specials):
        if kind == "special":
            out.append((text[b:e], vocab[text[b:e]], b, e))
            continue
        for word in pre_tokenize(normalize(text, b, e, opts)):
            out.extend(wordpiece(word, vocab, opts))
    return out


def truncate_pair(a, b, budget, strategy):
    """tokenizers' truncate_encodings (utils/truncation.rs)."""
    if budget == 0:
        return [], []
    total = len(a) + len(b)
    if total <= budget:
        return a, b
    to_remove = total - budget
    if strategy == "longest_first":
        n1, n2 = len(a), len(b)
        swap = n1 > n2
        if swap:
            n1, n2 = n2, n1
        n2 = n1 if n1 > budget else max(n1, budget - n1)
        if n1 + n2 > budget:
            n1 = budget // 2
            n2 = n1 + budget % 2
        if swap:
            n1, n2 = n2, n1
        return a[:n1], b[:n2]
    if strategy == "only_first":
        if len(a) <= to_remove:
            return None
        return a[:len(a) - to_remove], b
    if len(b) <= to_remove:
        return None
    return a, b[:len(b) - to_remove]


def assemble(seqs, vocab, opts):
    cls, sep = opts["cls_token"], opts["sep_token"]
    toks = [(cls, vocab[cls], 0, 0, 0)]
    for type_id, seq in enumerate(seqs):
        toks.extend(t + (type_id,) for t in seq)
        toks.append((sep, vocab[sep], 0, 0, type_id))
    return {"tokens": [t[0] for t in toks], "ids": [t[1] for t in toks],
            "type_ids": [t[4] for t in toks], "offsets": [[t[2], t[3]] for t in toks]}


def run_case(case, vocab, opts):
    kind = case["kind"]
    a = tokenize(case["text"], vocab, opts)
    if kind == "tokenize":
        return {"tokens": [t[0] for t in a], "ids": [t[1] for t in a],
                "type_ids": [0] * len(a), "offsets": [[t[2], t[3]] for t in a]}
    max_length = case.get("max_length", 512)
    if kind == "encode":
        return assemble([a[:max_length - 2] if max_length else a], vocab, opts)
    b = tokenize(case["text_b"], vocab, opts)
    strategy = case.get("truncation", "longest_first")
    if max_length and strategy != "do_not_truncate":
        res = truncate_pair(a, b, max_length - 3, strategy)
        if res is None:
            return {"error": True}
        a, b = res
    return assemble([a, b], vocab, opts)


# ---- vocabularies and cases ----------------------------------------------------------------
def load_vocab_lines(lines):
    vocab = {}
    for i, tok in enumerate(lines):
        vocab[tok] = i  # last line wins, as HF
    return vocab


def read_vocab_file(path):
    data = open(path, "rb").read().decode("utf-8")
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [l[:-1] if l.endswith("\r") else l for l in lines]


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "un", "##aff", "##able", "##a",
              "##b", "a", "b", "c", "cafe", "café", "i", "##̇", "##i", ",", ".", "!", "?", "[", "]",
              "mask", "中", "国", "##s", "run", "##ning", "ab", "##c", "x", "y", "z", "the",  # dup
              "ǆ", "σ", "ς", "οδος", "οδοσ", "ΟΔΟΣ", "##ο", "##δ", "##σ", "ο", "δ"]

VOCABS = {
    "bge": {"file": "bge-small-zh-v1.5/vocab.txt", "do_lower_case": False, "strip_accents": None},
    "demo_uie": {"file": "demo-uie/vocab.txt", "do_lower_case": True, "strip_accents": None},
    "uie_base": {"file": "uie-base-tokenizer-and-config-NO-WEIGHTS/vocab.txt",
                 "do_lower_case": True, "strip_accents": None},
    "uie_base_keep_accents": {"file": "uie-base-tokenizer-and-config-NO-WEIGHTS/vocab.txt",
                              "do_lower_case": True, "strip_accents": False},
    "bge_strip_cased": {"file": "bge-small-zh-v1.5/vocab.txt", "do_lower_case": False,
                        "strip_accents": True},
    "tiny": {"tokens": TINY_VOCAB, "do_lower_case": True, "strip_accents": None},
    "tiny_cased": {"tokens": TINY_VOCAB, "do_lower_case": False, "strip_accents": None,
                   "max_input_chars_per_word": 5},
    "tiny_raw": {"tokens": TINY_VOCAB, "do_lower_case": False, "strip_accents": False,
                 "clean_text": False, "tokenize_chinese_chars": False},
}

TEXTS = [
    "",
    "   ",
    "Hello, World! How are you?",
    "你好，世界！今天天气很好。",
    "床前明月光，疑是地[MASK]霜。",
    "地[MASK]霜",
    "a [mask] b [MASK]c[SEP][CLS] [UNK][PAD]",
    "[MASK][MASK]x[MAS",
    "ＡＢＣ１２３，full-width！？（）「」",
    "café naïve résumé Ångström",
    "cafe\u0301 nai\u0308ve re\u0301sume\u0301 A\u030angstro\u0308m",
    "😂 👍🏻 ❤️ 👨\u200d👩\u200d👧 🏳️\u200d🌈",
    "zero\u200bwidth\u200djoin\ufeffbom \x00null\x07bell\ufffdrepl",
    "tab\tnew\nline\r\nnbsp\u00a0ideo\u3000space\u2028sep\u0085nel\x0bvt\x0cff",
    "Русский язык, العربية, 日本語かな, 한국어 텍스트",
    "İstanbul İI ıi ΟΔΟΣ Σίσυφος ß Straße ǅ",
    "x" * 101 + " ok " + "é" * 100 + " " + "中" * 3,
    "supercalifragilisticexpialidocious antidisestablishmentarianism unaffable",
    "2024年3月15日，北京时间10:30，GPT-4o发布了新版本v2.1.0！价格$19.99/月。",
    "email: test.user+tag@example.com, url: https://www.example.org/a_b?c=d&e=f#g",
    "math: 1+1=2, 3×4=12, ½ ≤ ¾, π≈3.14159, ∑∞, x² + y³",
    "private\ue000use \U000f0000plane15 done",
    "《红楼梦》是曹雪芹写的。“你好”，他说。",
    "ＡＢＣ\u3000ｄｅｆ ＧＨＩ",
    "\U00020000\U0002A700\U0002B740\U0002B820\U0002B920\U0002CEB0\uF900\U0002F800 CJK ext",
    "  leading and trailing  ",
    "unaffable unaffablea the cafe café CAFÉ",
    "run running runs ab abc abcc",
    "ΟΔΟΣ οδος οδοσ",
    "ǆ Ǆ ǅ",
    "İ i\u0307 I\u0307",
]

PAIRS = [
    ("人名", "张三在北京大学工作，他是一名教授。"),
    ("What is the capital of France?", "Paris is the capital and most populous city of France."),
    ("短", "这是一个比较长的句子，用来测试截断策略是否与HF完全一致。"),
    ("这是一个比较长的第一句，用来测试截断。", "短句"),
    ("一二三四五六七八", "九十百千万亿兆京"),
    ("", "only second text"),
    ("only first text", ""),
]
MAX_LENGTHS = [0, 3, 4, 5, 8, 9, 12, 17, 40]
STRATEGIES = ["longest_first", "only_first", "only_second", "do_not_truncate"]


def options_for(spec):
    lower = spec["do_lower_case"]
    strip = spec["strip_accents"]
    return {"lowercase": lower, "strip_accents": lower if strip is None else strip,
            "clean_text": spec.get("clean_text", True),
            "tokenize_chinese_chars": spec.get("tokenize_chinese_chars", True),
            "max_input_chars_per_word": spec.get("max_input_chars_per_word", 100),
            "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
            "pad_token": "[PAD]", "mask_token": "[MASK]"}


def build_cases():
    cases = []
    real = ["bge", "demo_uie", "uie_base"]
    for name in real:
        for text in TEXTS:
            cases.append({"vocab": name, "kind": "tokenize", "text": text})
        cases.append({"vocab": name, "kind": "encode", "text": TEXTS[3]})
        cases.append({"vocab": name, "kind": "encode", "text": TEXTS[2], "max_length": 5})
        cases.append({"vocab": name, "kind": "encode", "text": TEXTS[2], "max_length": 2})
        cases.append({"vocab": name, "kind": "encode", "text": TEXTS[16], "max_length": 0})
    for name in ["uie_base_keep_accents", "bge_strip_cased"]:
        for text in TEXTS[9:17]:
            cases.append({"vocab": name, "kind": "tokenize", "text": text})
    for name in ["tiny", "tiny_cased", "tiny_raw"]:
        for text in TEXTS:
            cases.append({"vocab": name, "kind": "tokenize", "text": text})
        cases.append({"vocab": name, "kind": "encode", "text": "unaffable the cafe", "max_length": 4})
    for a, b in PAIRS:
        for strategy in STRATEGIES:
            for max_length in MAX_LENGTHS:
                cases.append({"vocab": "demo_uie", "kind": "pair", "text": a, "text_b": b,
                              "max_length": max_length, "truncation": strategy})
    for strategy in STRATEGIES:
        for max_length in [3, 5, 6, 7, 10]:
            cases.append({"vocab": "tiny", "kind": "pair", "text": "a b c a b", "text_b": "x y z x",
                          "max_length": max_length, "truncation": strategy})
    cases.append({"vocab": "bge", "kind": "pair", "text": PAIRS[1][0], "text_b": PAIRS[1][1]})
    return cases


def main():
    vocabs, specs = {}, {}
    for name, spec in VOCABS.items():
        if "file" in spec:
            path = os.path.join(SHARED_MODELS, spec["file"])
            if not os.path.exists(path):
                sys.exit(f"missing {path}: ../shared/models is needed to make the goldens")
            lines = read_vocab_file(path)
        else:
            lines = spec["tokens"]
        vocabs[name] = load_vocab_lines(lines)
        specs[name] = spec
    cases = build_cases()
    for case in cases:
        case.update(run_case(case, vocabs[case["vocab"]], options_for(specs[case["vocab"]])))
    doc = {
        "about": "made by tests/tools/make_tokenizer_goldens.py: HF fast BERT tokenizer rules, "
                 "offsets in code points into the original text; 'file' vocabs are relative to "
                 "../shared/models",
        "vocabs": specs,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
