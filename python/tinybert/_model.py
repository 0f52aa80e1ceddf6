"""tinybert.Model and tinybert.convert: the C API (include/tinybert/tinybert.h) in Python terms."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._errors import Error

PathLike = Union[str, "os.PathLike[str]"]
Text = Union[str, bytes]

DEFAULT_BACKEND = "int8"


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays in a request become plain JSON numbers and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _leaves(value: Any, path: str) -> Iterator[Tuple[str, Any]]:
    """(where, value) for every leaf of a JSON-like value, object keys included (as str)."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield (f"{path} key {key!r}" if path else f"key {key!r}"), str(key)
            yield from _leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, child in enumerate(value):
            yield from _leaves(child, f"{path}[{i}]")
    else:
        yield path, value


def _surrogate_error(request: Mapping[str, Any]) -> Error:
    """The error for a request holding a lone surrogate ("\\ud800": UTF-8 cannot carry it)."""
    for where, text in _leaves(request, ""):
        if not isinstance(text, str):
            continue
        at = next((i for i, ch in enumerate(text) if 0xD800 <= ord(ch) <= 0xDFFF), None)
        if at is not None:
            break
    else:
        where, text, at = "the request", "?", 0
    match = re.fullmatch(r"input(?:\[(\d+)\])?", where)
    index = None if match is None else int(match[1] or 0)
    name = f"text {index + 1}" if index is not None else f"'{where}'"
    return Error(
        f"{name}, character {at + 1}: a lone surrogate U+{ord(text[at]):04X} is not valid "
        "Unicode and cannot be encoded as UTF-8",
        status="TB_INVALID_REQUEST",
        type="invalid_request",
        http_status=400,
        input_index=index,
        position=None if index is None else at,
    )


def encode_request(request: Mapping[str, Any]) -> bytes:
    """A request dict as the UTF-8 JSON body the C API takes."""
    try:
        text = json.dumps(request, ensure_ascii=False, allow_nan=False, default=_json_default)
    except ValueError:  # NaN or infinity: JSON has no such numbers
        where, value = next(((w, v) for w, v in _leaves(request, "")
                             if isinstance(v, float) and not math.isfinite(v)), ("?", None))
        raise Error(f"'{where}' must be a finite number, got {value}",
                    status="TB_INVALID_REQUEST", type="invalid_request",
                    http_status=400) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise _surrogate_error(request) from None


class Model:
    """A .tbw model opened for inference (memory-mapped, not copied).

    One Model can be shared by any number of threads: calls run without the GIL, and concurrent
    forward passes are merged into packed batches, so threads add throughput.

    Args:
        path: a .tbw file (``tinybert.convert``'s or ``tinybert-convert``'s output).
        backend: ``"int8"`` (default), ``"bf16"``, ``"f32"`` (oneDNN) or ``"ref"`` (the plain
            fp32 reference); ``None`` picks the library's default (``"f32"`` with oneDNN).

    Raises:
        tinybert.Error: the file cannot be opened or is not a valid model, or the backend is
            unknown.

    Example:
        >>> model = tinybert.Model("models/bge-small-zh-v1.5.tbw")
        >>> model.embed(["今天天气真好。", "明天会下雨吗？"]).shape
        (2, 512)
    """

    def __init__(self, path: PathLike, backend: Optional[str] = DEFAULT_BACKEND) -> None:
        self._path = os.fsdecode(path)
        self._native = _native.Model(os.fsencode(path), backend)
        self._info: Dict[str, Any] = json.loads(self._native.info())

    # ---- what the model is -------------------------------------------------------------------

    @property
    def info(self) -> Dict[str, Any]:
        """Everything tb_model_info says: the server's /v1/models entry plus ``dimension``."""
        return dict(self._info)

    @property
    def path(self) -> str:
        return self._path

    @property
    def name(self) -> str:
        """The model's name (its file stem)."""
        return str(self._info.get("name", ""))

    @property
    def architecture(self) -> str:
        """``encoder``, ``masked_lm``, ``sequence_classification``, ``uie`` or ``siamese_uie``."""
        return str(self._info.get("architecture", ""))

    @property
    def tasks(self) -> List[str]:
        """The tasks this model serves: ``classify``, ``embeddings``, ``fill-mask``, ``extract``."""
        return list(self._info.get("tasks", []))

    @property
    def backend(self) -> str:
        return str(self._info.get("backend", ""))

    @property
    def dimension(self) -> int:
        """Length of ``embed``'s vectors (0 for a model without sentence embeddings)."""
        return int(self._info.get("dimension", 0))

    @property
    def max_length(self) -> int:
        """Most tokens the model reads at once (longer texts are truncated or windowed)."""
        return int(self._info.get("max_length", 0))

    @property
    def hidden_size(self) -> int:
        return int(self._info.get("hidden_size", 0))

    @property
    def closed(self) -> bool:
        return bool(self._native.closed)

    def __repr__(self) -> str:
        state = ", closed" if self.closed else ""
        return (f"tinybert.Model({self._path!r}, backend={self.backend!r}, "
                f"architecture={self.architecture!r}{state})")

    # ---- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Frees the model once the calls in flight have finished; later calls raise Error."""
        self._native.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- tasks --------------------------------------------------------------------------------

    def tokenize(self, text: Text, text_pair: Optional[Text] = None,
                 max_length: Optional[int] = None) -> Dict[str, List[Any]]:
        """Tokens of a text (or pair) as the model reads them, [CLS] / [SEP] added.

        Truncated longest-first to ``max_length`` tokens (default: the model's maximum).
        Returns lists under the keys of transformers' BatchEncoding: ``input_ids``,
        ``token_type_ids``, ``attention_mask``, plus ``tokens`` (vocabulary strings),
        ``offsets`` ((start, end) code-point offsets into the text a token came from; (0, 0) for
        special tokens, as transformers' ``offset_mapping``) and ``sequence_ids`` (0, 1, or None
        for a special token).
        """
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        return self._native.tokenize(text, text_pair, max_length or 0)

    def embed(self, texts: Union[Text, Sequence[Text]],
              normalize: Optional[bool] = None) -> np.ndarray:
        """Sentence embeddings (an ``encoder`` model), with the model's pooling.

        Args:
            texts: one text, or a list of them (run as one packed batch).
            normalize: scale to unit length; None: the model's default (bge: yes).

        Returns:
            float32 array, shape (len(texts), dimension), or (dimension,) for one str. The array
            is the engine's own buffer (no copy).
        """
        flag = -1 if normalize is None else int(bool(normalize))
        if isinstance(texts, (str, bytes)):
            return self._native.embed((texts,), flag)[0]
        if not isinstance(texts, (list, tuple)):
            texts = list(texts)
        if not texts and self.dimension:
            return np.empty((0, self.dimension), dtype=np.float32)
        return self._native.embed(texts, flag)

    def classify(self, request: Optional[Mapping[str, Any]] = None, /,
                 **fields: Any) -> Dict[str, Any]:
        """Zero-shot classification: the body and response of POST /v1/classify (docs/api.md).

        >>> model.classify(input="今天的足球比赛非常精彩", labels=["体育", "财经"])
        {'model': ..., 'mode': 'embedding', 'results': [{'text': ..., 'labels': [...]}], ...}
        """
        return self._json_call(self._native.classify, request, fields)

    def fill_mask(self, request: Optional[Mapping[str, Any]] = None, /,
                  **fields: Any) -> Dict[str, Any]:
        """Top-k tokens per [MASK]: the body and response of POST /v1/fill-mask (docs/api.md).

        >>> model.fill_mask(input="中国的首都是[MASK]京。", top_k=3)
        """
        return self._json_call(self._native.fill_mask, request, fields)

    def extract(self, request: Optional[Mapping[str, Any]] = None, /,
                **fields: Any) -> Dict[str, Any]:
        """Information extraction (UIE / SiameseUIE): POST /v1/extract's body and response.

        >>> model.extract(input="张三在北京大学工作。", schema={"人名": ["职位"]})
        """
        return self._json_call(self._native.extract, request, fields)

    @staticmethod
    def _json_call(fn: Any, request: Optional[Mapping[str, Any]],
                   fields: Dict[str, Any]) -> Dict[str, Any]:
        body = dict(request or {})
        body.update(fields)
        return json.loads(fn(encode_request(body)))


def convert(src_dir: PathLike, out_path: PathLike, dtype: str = "auto",
            architecture: Optional[str] = None,
            weights: Optional[PathLike] = None) -> Dict[str, Any]:
    """Converts a HuggingFace / ModelScope / PaddleNLP model folder into a .tbw file.

    The same as the ``tinybert-convert`` program: safetensors, pytorch_model.bin or ONNX weights.

    Args:
        src_dir: the model folder (config.json, vocab.txt, weights).
        out_path: the .tbw file to write.
        dtype: ``"auto"`` (keep what the weights are stored in), ``"f32"``, ``"f16"``, ``"bf16"``
            or ``"int8"``.
        architecture: force an architecture instead of reading it from the folder.
        weights: a weight file to use instead of the one found in the folder.

    Returns:
        The converter's report (what was converted, with notes).

    Raises:
        tinybert.Error: the folder cannot be read or converted (``status == "TB_MODEL_ERROR"``).
    """
    options: Dict[str, Any] = {"dtype": dtype}
    if architecture is not None:
        options["architecture"] = architecture
    if weights is not None:
        options["weights"] = os.fsdecode(weights)
    report = _native.convert(os.fsencode(src_dir), os.fsencode(out_path), json.dumps(options))
    return json.loads(report)
