"""Re-implementation of the parts of ModelScope that tinybert has to match.

Shared by make_modelscope_models.py (writes checkpoints + goldens) and check_goldens.py.
Needs Debian's python3-torch (1.13) and numpy; no transformers, no modelscope.

Every class and function below follows ModelScope's source (GitHub modelscope/modelscope,
snapshot 2905da12, 2026-07) line by line; the comment above each one names the file and the
function it reproduces. "MS" = modelscope/, "HF" = the transformers code MS calls into.
Dropout is left out (eval mode), so is everything that only matters for training
(losses, adversarial training, gradient checkpointing, head pruning, past_key_values).
"""
import json
import math
import unicodedata
from copy import deepcopy
from math import ceil

import torch
import torch.nn as nn
import torch.nn.functional as F

# ============================================================================ tokenizer
# HF BertTokenizer (slow; used by MS for structbert: MS/preprocessors/nlp/transformers_tokenizer.py
# NLPTokenizer.build_tokenizer -> BertTokenizer unless tokenizer_config.json has "use_fast": true)
# and BertTokenizerFast (SiameseUIE: MS/preprocessors/nlp/siamese_uie_preprocessor.py,
# AutoTokenizer.from_pretrained(model_dir, use_fast=True)). For the texts used here both give the
# same ids; the fast one also gives character offsets (Python str indices = code points).

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _is_whitespace(c):
    # HF tokenization_bert / tokenization_utils _is_whitespace
    if c in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(c) == "Zs"


def _is_control(c):
    # HF _is_control
    if c in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(c).startswith("C")


def _is_punctuation(c):
    # HF _is_punctuation: every non-alphanumeric ASCII char counts, plus Unicode P*
    cp = ord(c)
    if (33 <= cp <= 47) or (58 <= cp <= 64) or (91 <= cp <= 96) or (123 <= cp <= 126):
        return True
    return unicodedata.category(c).startswith("P")


def _is_chinese_char(cp):
    # HF BasicTokenizer._is_chinese_char
    return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or (0x20000 <= cp <= 0x2A6DF)
            or (0x2A700 <= cp <= 0x2B73F) or (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF)
            or (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F))


class BertTokenizer:
    """BasicTokenizer (clean text, CJK split, lower case + accent strip, punctuation split) then
    WordPiece (greedy longest match, '##' continuation, max 100 chars/word, whole word -> [UNK]).
    Special tokens written in the text ("[MASK]") are kept whole, as HF's added-token split does."""

    def __init__(self, vocab, do_lower_case=True):
        self.vocab = {t: i for i, t in enumerate(vocab)}
        self.inv = list(vocab)
        self.do_lower_case = do_lower_case
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (self.vocab[t] for t in SPECIAL_TOKENS)
        self.all_special_ids = sorted({self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id})

    def _norm_chars(self, text, base):
        out = []  # (char, original index)
        for i, c in enumerate(text):
            cp = ord(c)
            if cp == 0 or cp == 0xFFFD or _is_control(c):
                continue
            if _is_whitespace(c):
                out.append((" ", base + i))
                continue
            if self.do_lower_case:
                s = unicodedata.normalize("NFD", c.lower())
                s = "".join(ch for ch in s if unicodedata.category(ch) != "Mn")
            else:
                s = c
            for ch in s:
                out.append((ch, base + i))
        return out

    def _words(self, chars):
        words, cur = [], []
        for ch, idx in chars:
            if ch == " ":
                if cur:
                    words.append(cur)
                cur = []
            elif _is_punctuation(ch) or _is_chinese_char(ord(ch)):
                if cur:
                    words.append(cur)
                words.append([(ch, idx)])
                cur = []
            else:
                cur.append((ch, idx))
        if cur:
            words.append(cur)
        return words

    def _wordpiece(self, word):
        s = "".join(ch for ch, _ in word)
        if len(s) > 100:
            return [(self.unk_id, word[0][1], word[-1][1] + 1)]
        pieces, start = [], 0
        while start < len(s):
            end, cur = len(s), None
            while start < end:
                sub = s[start:end]
                if start > 0:
                    sub = "##" + sub
                if sub in self.vocab:
                    cur = sub
                    break
                end -= 1
            if cur is None:
                return [(self.unk_id, word[0][1], word[-1][1] + 1)]
            pieces.append((self.vocab[cur], word[start][1], word[end - 1][1] + 1))
            start = end
        return pieces

    def tokenize(self, text):
        """-> list of (id, char_begin, char_end) without [CLS]/[SEP]."""
        out, pos = [], 0
        while pos <= len(text):
            nxt = text.find("[MASK]", pos)
            seg_end = len(text) if nxt < 0 else nxt
            for w in self._words(self._norm_chars(text[pos:seg_end], pos)):
                out.extend(self._wordpiece(w))
            if nxt < 0:
                break
            out.append((self.mask_id, nxt, nxt + 6))
            pos = nxt + 6
        return out

    def encode(self, text, pair=None, max_length=None):
        """[CLS] A [SEP] (B [SEP]); token types 0 / 1; truncation longest_first as the slow HF
        tokenizer does it (tokenization_utils_base.truncate_sequences: drop the last token of A while
        A is strictly longer than B, else the last token of B, until the total fits; the Rust fast
        tokenizer may split a tie differently). Offsets (0,0) for the specials."""
        a = self.tokenize(text)
        b = self.tokenize(pair) if pair is not None else None
        if max_length is not None:
            special = 2 if b is None else 3
            while len(a) + (len(b) if b is not None else 0) + special > max_length:
                if b is None or len(a) > len(b):
                    a = a[:-1]
                else:
                    b = b[:-1]
        ids = [self.cls_id] + [t[0] for t in a] + [self.sep_id]
        offsets = [(0, 0)] + [(t[1], t[2]) for t in a] + [(0, 0)]
        types = [0] * len(ids)
        if b is not None:
            ids += [t[0] for t in b] + [self.sep_id]
            offsets += [(t[1], t[2]) for t in b] + [(0, 0)]
            types += [1] * (len(b) + 1)
        return {"ids": ids, "type_ids": types, "attention_mask": [1] * len(ids), "offsets": offsets}

    def batch(self, texts, pairs=None, padding=False, max_length=None):
        """HF __call__ on a list: padding=True pads to the longest (ids [PAD]=0, types 0, mask 0)."""
        encs = [self.encode(t, None if pairs is None else pairs[i], max_length) for i, t in enumerate(texts)]
        if padding:
            n = max(len(e["ids"]) for e in encs)
            for e in encs:
                k = n - len(e["ids"])
                e["ids"] = e["ids"] + [self.pad_id] * k
                e["type_ids"] = e["type_ids"] + [0] * k
                e["attention_mask"] = e["attention_mask"] + [0] * k
                e["offsets"] = e["offsets"] + [(0, 0)] * k
        return encs

    def decode(self, ids, skip_special_tokens=True, clean_up_tokenization_spaces=True):
        # HF PreTrainedTokenizer._decode + BertTokenizer.convert_tokens_to_string + clean_up_tokenization
        toks = [self.inv[i] for i in ids if not (skip_special_tokens and i in self.all_special_ids)]
        text = " ".join(toks).replace(" ##", "").strip()
        if clean_up_tokenization_spaces:
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(a, b)
        return text


# ============================================================================ model
# MS/models/nlp/structbert/backbone.py (Sbert*) and MS/models/nlp/bert/backbone.py (Bert*) are the
# same network (diffed: only docstrings, nn.Softmax vs F.softmax and the StructBERT embeddings also
# returning the raw word embeddings). Post-LN BERT, GELU = HF ACT2FN['gelu'] (exact erf).


class Config:
    def __init__(self, d):
        self.__dict__.update(d)


class BertEmbeddings(nn.Module):
    # MS bert/backbone.py BertEmbeddings.__init__ / forward (position_embedding_type 'absolute')
    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # persistent buffer -> '<prefix>embeddings.position_ids' int64 [1, max_pos] in state_dict()
        self.register_buffer("position_ids", torch.arange(config.max_position_embeddings).expand((1, -1)))
        self.register_buffer("token_type_ids", torch.zeros(self.position_ids.size(), dtype=torch.long),
                             persistent=False)

    def forward(self, input_ids, token_type_ids=None, position_ids=None):
        seq_length = input_ids.size(1)
        if position_ids is None:
            position_ids = self.position_ids[:, 0:seq_length]
        if token_type_ids is None:
            token_type_ids = self.token_type_ids[:, :seq_length].expand(input_ids.size(0), seq_length)
        embeddings = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        embeddings += self.position_embeddings(position_ids)
        return self.LayerNorm(embeddings)


class BertSelfAttention(nn.Module):
    # MS bert/backbone.py BertSelfAttention (encoder self-attention branch only)
    def __init__(self, config):
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = int(config.hidden_size / config.num_attention_heads)
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)

    def transpose_for_scores(self, x):
        x = x.view(*(x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)))
        return x.permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask):
        q = self.transpose_for_scores(self.query(hidden_states))
        k = self.transpose_for_scores(self.key(hidden_states))
        v = self.transpose_for_scores(self.value(hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = F.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return ctx.view(*(ctx.size()[:-2] + (self.all_head_size,)))


class BertSelfOutput(nn.Module):
    # MS bert/backbone.py BertSelfOutput: LN(dense(x) + input)
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class BertAttention(nn.Module):
    # MS bert/backbone.py BertAttention: names attention.self.* / attention.output.*
    def __init__(self, config):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden_states, attention_mask):
        return self.output(self.self(hidden_states, attention_mask), hidden_states)


class BertIntermediate(nn.Module):
    # MS bert/backbone.py BertIntermediate: ACT2FN[config.hidden_act]; 'gelu' = exact erf GELU
    def __init__(self, config):
        super().__init__()
        assert config.hidden_act == "gelu"
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)

    def forward(self, hidden_states):
        return F.gelu(self.dense(hidden_states))


class BertOutput(nn.Module):
    # MS bert/backbone.py BertOutput
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states, input_tensor):
        return self.LayerNorm(self.dense(hidden_states) + input_tensor)


class BertLayer(nn.Module):
    # MS bert/backbone.py BertLayer.forward + feed_forward_chunk (chunk size 0 = no chunking)
    def __init__(self, config):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden_states, attention_mask):
        a = self.attention(hidden_states, attention_mask)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    # MS bert/backbone.py BertEncoder
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(self, hidden_states, attention_mask=None):
        for layer_module in self.layer:
            hidden_states = layer_module(hidden_states, attention_mask)
        return (hidden_states,)


class BertPooler(nn.Module):
    # MS bert/backbone.py BertPooler: tanh(dense(h[:, 0]))
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states):
        return torch.tanh(self.dense(hidden_states[:, 0]))


def get_extended_attention_mask(attention_mask, dtype):
    # HF ModuleUtilsMixin.get_extended_attention_mask (encoder, 2-D mask):
    # (1 - mask)[:, None, None, :] * finfo(dtype).min
    ext = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - ext) * torch.finfo(dtype).min


class BertModel(nn.Module):
    # MS bert/backbone.py BertModel.forward (== structbert/backbone.py SbertModel.forward)
    def __init__(self, config, add_pooling_layer=True):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None

    def get_extended_attention_mask(self, attention_mask, input_shape=None):
        return get_extended_attention_mask(attention_mask, self.embeddings.word_embeddings.weight.dtype)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, position_ids=None):
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long)
        ext = self.get_extended_attention_mask(attention_mask)
        # NOTE MS also calls get_head_mask(None, config.num_hidden_layers) = [None] * n here; for the
        # SiameseUIE plm n = N - 6 (see SiameseUieModel), which is negative for N < 6 -> [] -> IndexError
        # in BertEncoder. Our tiny SiameseUIE (N = 4) therefore only runs in this re-implementation.
        emb = self.embeddings(input_ids, token_type_ids=token_type_ids, position_ids=position_ids)
        seq = self.encoder(emb, ext)[0]
        pooled = self.pooler(seq) if self.pooler is not None else None
        return seq, pooled


class SbertForSequenceClassification(nn.Module):
    # MS structbert/text_classification.py SbertForSequenceClassification.__init__ / _forward_call:
    # logits = classifier(dropout(pooler_output)); base_model_prefix 'bert' (config may override it)
    def __init__(self, config):
        super().__init__()
        prefix = getattr(config, "base_model_prefix", "bert")
        self.base_model_prefix = prefix
        setattr(self, prefix, BertModel(config))
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        _, pooled = getattr(self, self.base_model_prefix)(input_ids, attention_mask, token_type_ids)
        return self.classifier(pooled)


class SbertPredictionHeadTransform(nn.Module):
    # MS structbert/fill_mask.py SbertPredictionHeadTransform: LN(gelu(dense(x)))
    def __init__(self, config):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x):
        return self.LayerNorm(F.gelu(self.dense(x)))


class SbertLMPredictionHead(nn.Module):
    # MS structbert/fill_mask.py SbertLMPredictionHead: decoder = nn.Linear(hidden, vocab) WITH its
    # own bias; there is no separate 'cls.predictions.bias' parameter (HF BertLMPredictionHead has one)
    def __init__(self, config):
        super().__init__()
        self.transform = SbertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, x):
        return self.decoder(self.transform(x))


class SbertOnlyMLMHead(nn.Module):
    # MS structbert/fill_mask.py SbertOnlyMLMHead -> names cls.predictions.*
    def __init__(self, config):
        super().__init__()
        self.predictions = SbertLMPredictionHead(config)

    def forward(self, seq):
        return self.predictions(seq)


class SbertForMaskedLM(nn.Module):
    # MS structbert/fill_mask.py SbertForMaskedLM: self.bert = SbertModel(config) (WITH pooler: the
    # default add_pooling_layer=True; unused), self.cls = SbertOnlyMLMHead(config). HF
    # PreTrainedModel.tie_weights (tie_word_embeddings defaults to True) makes
    # cls.predictions.decoder.weight the same Parameter as bert.embeddings.word_embeddings.weight.
    def __init__(self, config):
        super().__init__()
        self.bert = BertModel(config)
        self.cls = SbertOnlyMLMHead(config)
        self.cls.predictions.decoder.weight = self.bert.embeddings.word_embeddings.weight

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        seq, _ = self.bert(input_ids, attention_mask, token_type_ids)
        return self.cls(seq)


class SiameseUieModel(nn.Module):
    # MS bert/siamese_uie.py SiameseUieModel
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.plm = BertModel(self.config, add_pooling_layer=True)
        self.head_clsf = nn.Linear(config.hidden_size, 1)
        self.tail_clsf = nn.Linear(config.hidden_size, 1)
        self.set_crossattention_layer()

    def set_crossattention_layer(self, num_hidden_layers=6):
        # Literal copy: the number of cross layers is HARD-CODED to 6 (called without argument); the
        # plm keeps layer[:N-6]. For N = 12: 6 + 6. For our tiny N = 4, N-6 = -2 and Python's negative
        # slicing gives plm = layer[:-2] (2 layers), cross = layer[-2:] (2 layers).
        crossattention_config = deepcopy(self.config)
        crossattention_config.num_hidden_layers = num_hidden_layers
        self.config.num_hidden_layers -= num_hidden_layers
        self.crossattention = BertEncoder(crossattention_config)
        self.crossattention.layer = self.plm.encoder.layer[self.config.num_hidden_layers:]
        self.plm.encoder.layer = self.plm.encoder.layer[:self.config.num_hidden_layers]

    def get_cross_attention_output(self, hidden_states, attention_mask, encoder_hidden_states,
                                   encoder_attention_mask):
        # MS SiameseUieModel.get_cross_attention_output: cross layers = plain self-attention encoder
        # layers over [text ; hint] with the two masks concatenated; keep the first L (text) rows
        cat_hidden_states = torch.cat([hidden_states, encoder_hidden_states], dim=1)
        cat_attention_mask = torch.cat([attention_mask, encoder_attention_mask], dim=1)
        cat_attention_mask = self.plm.get_extended_attention_mask(cat_attention_mask, cat_hidden_states.size()[:2])
        return self.crossattention(cat_hidden_states, cat_attention_mask)[0][:, :hidden_states.size()[1], :]

    def get_plm_sequence_output(self, input_ids, attention_mask, position_ids=None, is_hint=False):
        # MS SiameseUieModel.get_plm_sequence_output: hints get token type 1 everywhere (padding too)
        token_type_ids = torch.ones_like(attention_mask) if is_hint else None
        return self.plm(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                        position_ids=position_ids)[0]

    def fast_inference(self, sequence_output, attention_masks, hint_ids, cross_attention_masks):
        # MS SiameseUieModel.fast_inference: hint positions continue after the text window
        position_ids = torch.arange(hint_ids.size(1)).expand((1, -1)) + sequence_output.size(1)
        hint_sequence_output = self.get_plm_sequence_output(hint_ids, cross_attention_masks, position_ids,
                                                            is_hint=True)
        sequence_output = self.get_cross_attention_output(sequence_output, attention_masks,
                                                          hint_sequence_output, cross_attention_masks)
        head_logits = self.head_clsf(sequence_output).squeeze(-1)
        tail_logits = self.tail_clsf(sequence_output).squeeze(-1)
        head_probs = head_logits + (1 - attention_masks) * -10000
        tail_probs = tail_logits + (1 - attention_masks) * -10000
        return head_probs, tail_probs


# ============================================================================ pipelines


def softmax_np(x, axis=-1):
    # scipy.special.softmax: exp(x - max) / sum
    import numpy as np
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


class ZeroShotPipeline:
    """MS/pipelines/nlp/zero_shot_classification_pipeline.py ZeroShotClassificationPipeline with
    MS/preprocessors/nlp/zero_shot_classification_preprocessor.py (max_length 512, padding=True,
    truncation=True; 'only_first' is dropped by NLPTokenizer.__call__ -> HF longest_first)."""

    entailment_id = 0      # ZeroShotClassificationPipeline.__init__: hard-coded
    contradiction_id = 2   # (config id2label / label2id are not read)

    def __init__(self, model, tokenizer, max_length=512):
        self.model, self.tok, self.max_length = model, tokenizer, max_length

    @staticmethod
    def _parse_labels(labels):
        # ZeroShotClassificationPipeline._parse_labels: a list is used as is
        if isinstance(labels, str):
            labels = labels.replace("，", ",")
            labels = [label.strip() for label in labels.split(",") if label.strip()]
        return labels

    def __call__(self, text, candidate_labels, hypothesis_template="{}", multi_label=False):
        labels = self._parse_labels(candidate_labels)
        pairs = [[text, hypothesis_template.format(label)] for label in labels]
        encs = self.tok.batch([p[0] for p in pairs], [p[1] for p in pairs], padding=True,
                              max_length=self.max_length)
        ids = torch.tensor([e["ids"] for e in encs])
        with torch.no_grad():
            logits_t = self.model(ids, torch.tensor([e["attention_mask"] for e in encs]),
                                  torch.tensor([e["type_ids"] for e in encs]))
        logits = logits_t.numpy()
        # postprocess
        if multi_label or len(labels) == 1:
            lg = logits[..., [self.contradiction_id, self.entailment_id]]
            scores = softmax_np(lg, axis=-1)[..., 1]
        else:
            lg = logits[..., self.entailment_id]
            scores = softmax_np(lg, axis=-1)
        reversed_index = list(reversed(scores.argsort()))
        return {
            "labels": [labels[i] for i in reversed_index],
            "scores": [scores[i].item() for i in reversed_index],
        }, labels, hypothesis_template, encs, logits


class FillMaskPipeline:
    """MS/pipelines/nlp/fill_mask_pipeline.py FillMaskPipeline with FillMaskTransformersPreprocessor
    (MS/preprocessors/nlp/fill_mask_preprocessor.py: padding 'max_length', max_length 128,
    truncation True): argmax over the vocabulary at every position, [MASK] positions replaced,
    decoded with skip_special_tokens=True, clean_up_tokenization_spaces=True."""

    def __init__(self, model, tokenizer, max_length=128):
        self.model, self.tok, self.max_length = model, tokenizer, max_length

    def __call__(self, text):
        import numpy as np
        e = self.tok.encode(text, max_length=self.max_length)
        n = len(e["ids"])
        k = self.max_length - n
        ids = torch.tensor([e["ids"] + [self.tok.pad_id] * k])
        mask = torch.tensor([[1] * n + [0] * k])
        types = torch.tensor([e["type_ids"] + [0] * k])
        with torch.no_grad():
            logits = self.model(ids, mask, types)
        logits = logits.numpy()
        input_ids = ids.numpy()
        pred_ids = np.argmax(logits, axis=-1)
        rst_ids = np.where(input_ids == self.tok.mask_id, pred_ids, input_ids)
        pred_strings = [self.tok.decode(list(r), skip_special_tokens=True, clean_up_tokenization_spaces=True)
                        for r in rst_ids]
        return {"text": pred_strings}, e, logits[0, :n]


class SiameseUiePipeline:
    """MS/pipelines/nlp/siamese_uie_pipeline.py SiameseUiePipeline (constants from __init__:
    slide_len 352, max_len 384, hint_max_len 128, inference_batch_size 8, threshold 0.5 — all
    hard-coded, not read from any config). `trace` records what each get_prefix_infos call saw."""

    def __init__(self, model, tokenizer, slide_len=352, max_len=384, hint_max_len=128):
        self.model, self.tok = model, tokenizer
        self.slide_len, self.max_len, self.hint_max_len = slide_len, max_len, hint_max_len
        self.inference_batch_size = 8
        self.threshold = 0.5
        self.trace = []

    def __call__(self, input, schema, output_all_prefix=False):
        text = input
        if type(schema) == str:
            schema = json.loads(schema)
        tokenized_text = self.tok.encode(text)           # self.preprocessor([text])[0]: no truncation
        pred_info_list, prefix_info = [], []
        self.trace = []
        self.forward(text, tokenized_text, prefix_info, schema, pred_info_list, output_all_prefix)
        return {"output": pred_info_list}

    def _pad(self, input_ids, pad_token_id):
        input_ids[-1] += [pad_token_id] * (self.max_len - len(input_ids[-1]))
        return input_ids

    def tokenize_sample(self, text, tokenized_text, hints):
        tokenized_hints = self.tok.batch(hints, padding=True, max_length=self.hint_max_len)
        tokenized_data = []
        n = len(tokenized_text["ids"])
        split_num = ceil((n - self.max_len) / self.slide_len) + 1 if n > self.max_len else 1
        token_ids = [tokenized_text["ids"][j * self.slide_len:j * self.slide_len + self.max_len]
                     for j in range(split_num)]
        attention_masks = [tokenized_text["attention_mask"][j * self.slide_len:j * self.slide_len + self.max_len]
                           for j in range(split_num)]
        if split_num > 1:
            token_ids = self._pad(token_ids, 0)
            attention_masks = self._pad(attention_masks, 0)
        token_ids = torch.tensor(token_ids, dtype=torch.long)
        attention_masks = torch.tensor(attention_masks, dtype=torch.long)
        batch_num = token_ids.size(0) // self.inference_batch_size + 1
        all_token_ids = torch.tensor_split(token_ids, batch_num)
        all_attention_masks = torch.tensor_split(attention_masks, batch_num)
        all_sequence_output = []
        with torch.no_grad():
            for tids, amasks in zip(all_token_ids, all_attention_masks):
                all_sequence_output.append(self.model.get_plm_sequence_output(tids, amasks))
        all_sequence_output = torch.cat(all_sequence_output, dim=0)
        all_attention_masks = torch.cat(all_attention_masks, dim=0)
        for i in range(len(hints)):
            hint = hints[i]
            tokenized_hint = tokenized_hints[i]
            for j in range(split_num):
                tokenized_data.append({
                    "id": hint + "--" + text,
                    "hint": hint,
                    "text": text,
                    "shift": j * self.slide_len,
                    "sequence_output": all_sequence_output[j],
                    "hint_token_ids": tokenized_hint["ids"],
                    "attention_masks": all_attention_masks[j],
                    "cross_attention_masks": tokenized_hint["attention_mask"],
                })
        return tokenized_data, tokenized_hints, split_num

    def get_tokenized_data_and_data_loader(self, text, tokenized_text, hints):
        tokenized_data, tokenized_hints, split_num = self.tokenize_sample(text, tokenized_text, hints)
        sequence_output = torch.stack([item["sequence_output"] for item in tokenized_data])
        attention_masks = torch.stack([item["attention_masks"] for item in tokenized_data])
        hint_token_ids = torch.tensor([item["hint_token_ids"] for item in tokenized_data], dtype=torch.long)
        cross_attention_masks = torch.tensor([item["cross_attention_masks"] for item in tokenized_data],
                                             dtype=torch.long)
        batch_num = sequence_output.size(0) // self.inference_batch_size + 1
        sequence_output = torch.tensor_split(sequence_output, batch_num)
        attention_masks = torch.tensor_split(attention_masks, batch_num)
        hint_token_ids = torch.tensor_split(hint_token_ids, batch_num)
        cross_attention_masks = torch.tensor_split(cross_attention_masks, batch_num)
        return tokenized_data, (sequence_output, attention_masks, hint_token_ids,
                                cross_attention_masks), tokenized_hints, split_num

    def get_entities(self, text, offsets, head_probs, tail_probs):
        # MS SiameseUiePipeline.get_entities: every position with head > threshold starts a span;
        # its end is the FIRST position >= start with tail > threshold (searched to the end of the
        # token list, [SEP] included); spans sorted by (char_start, char_end)
        sample_entities = []
        potential_heads = [j for j in range(len(head_probs)) if head_probs[j] > self.threshold]
        for ph in potential_heads:
            for pt in range(ph, len(tail_probs)):
                if tail_probs[pt] > self.threshold:
                    char_head = offsets[ph][0]
                    char_tail = offsets[pt][1]
                    sample_entities.append({"offset": [char_head, char_tail], "span": text[char_head:char_tail]})
                    break
        return sorted(sample_entities, key=lambda x: tuple(x["offset"]))

    def get_prefix_infos(self, text, tokenized_text, prefix_info, schema_types):
        hints = []
        for st in schema_types:
            hint = ""
            for item in prefix_info:
                hint += f'{item["type"]}: {item["span"]}, '
            hint += f"{st}: "
            hints.append(hint)
        all_valid_tokenized_data, all_tensor_data, tokenized_hints, split_num = \
            self.get_tokenized_data_and_data_loader(text, tokenized_text, hints)
        probs = []
        last_uuid = None
        all_pred_entities, merged = [], []
        all_head_probs, all_tail_probs = [], []
        with torch.no_grad():
            for batch_data in zip(*all_tensor_data):
                bh, bt = self.model.fast_inference(*batch_data)
                all_head_probs += bh.tolist()
                all_tail_probs += bt.tolist()
        all_valid_tokenized_data.append({"id": "WhatADifferentUUiD"})
        all_head_probs.append(None)
        all_tail_probs.append(None)
        for tokenized_sample, head_probs, tail_probs in zip(all_valid_tokenized_data, all_head_probs,
                                                            all_tail_probs):
            uuid = tokenized_sample["id"]
            prob = {"shift": tokenized_sample.get("shift", 0), "head": head_probs, "tail": tail_probs}
            if last_uuid is not None and uuid != last_uuid:
                len_tokens = len(tokenized_text["offsets"])
                head_probs = [-1] * len_tokens
                tail_probs = [-1] * len_tokens
                for prob_tmp in probs:
                    shift = prob_tmp["shift"]
                    head = prob_tmp["head"]
                    tail = prob_tmp["tail"]
                    len_sub = len(head)
                    for j in range(len_sub):
                        if j + shift < len_tokens:
                            # running pairwise mean; at most 2 windows overlap (352 < 384 <= 2*352)
                            head_probs[j + shift] = head[j] if head_probs[j + shift] == -1 else \
                                (head_probs[j + shift] + head[j]) / 2
                            tail_probs[j + shift] = tail[j] if tail_probs[j + shift] == -1 else \
                                (tail_probs[j + shift] + tail[j]) / 2
                offsets = tokenized_text["offsets"]
                pred_entities = self.get_entities(text, offsets, head_probs, tail_probs)
                all_pred_entities.append(pred_entities)
                merged.append((head_probs, tail_probs, [dict(p) for p in probs]))
                probs = []
            probs.append(prob)
            last_uuid = uuid
        next_prefix_infos = []
        for st, pred_entities in zip(schema_types, all_pred_entities):
            for e in pred_entities:
                pi = deepcopy(prefix_info)
                pi.append({"type": st, "span": e["span"], "offset": e["offset"]})
                next_prefix_infos.append(pi)
        # ---- trace (not in MS): what a C++ test needs to check each step
        window_len = all_tensor_data[0][0].size(1)
        self.trace.append({
            "prefix": deepcopy(prefix_info),
            "schema_types": list(schema_types),
            "hints": [{
                "hint": h,
                "input_ids": [i for i, m in zip(th["ids"], th["attention_mask"]) if m],
                "position_start": window_len,
                "head_logits": mh,
                "tail_logits": mt,
                "window_overlaps": self._overlaps(wp),
                "entities": ents,
            } for h, th, (mh, mt, wp), ents in zip(hints, tokenized_hints, merged, all_pred_entities)],
        })
        return next_prefix_infos

    @staticmethod
    def _overlaps(window_probs):
        # trace only: the raw logits of both windows on every overlap (tokens shift_j .. shift_{j-1}+L-1)
        out = []
        for a, b in zip(window_probs, window_probs[1:]):
            lo, hi = b["shift"], a["shift"] + len(a["head"])
            if lo < hi:
                out.append({"tokens": [lo, hi],
                            "head": [a["head"][lo - a["shift"]:hi - a["shift"]], b["head"][:hi - lo]],
                            "tail": [a["tail"][lo - a["shift"]:hi - a["shift"]], b["tail"][:hi - lo]]})
        return out

    def forward(self, text, tokenized_text, prefix_info, curr_schema_dict, pred_info_list, output_all_prefix):
        next_prefix_infos = self.get_prefix_infos(text, tokenized_text, prefix_info, curr_schema_dict)
        for prefix_info in next_prefix_infos:
            next_schema_dict = curr_schema_dict[prefix_info[-1]["type"]]
            if next_schema_dict is None:
                pred_info_list.append(prefix_info)
            else:
                if output_all_prefix:
                    pred_info_list.append(prefix_info)
                self.forward(text, tokenized_text, prefix_info, next_schema_dict, pred_info_list,
                             output_all_prefix)
