"""tinybert.pipeline: the engine's tasks in the call and output shapes of HuggingFace transformers'
pipelines (feature-extraction, zero-shot-classification, fill-mask) and PaddleNLP's Taskflow
(information-extraction)."""

from __future__ import annotations

from typing import (Any, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, Union,
                    overload)

import numpy as np

from ._errors import Error
from ._model import DEFAULT_BACKEND, Model, PathLike

Inputs = Union[str, Sequence[str]]
# Texts per engine request (the C API takes up to 1024): longer lists run as several requests.
MAX_INPUTS_PER_CALL = 256


def _texts(inputs: Inputs) -> Tuple[List[str], bool]:
    """(texts, whether one str was given)."""
    if isinstance(inputs, str):
        return [inputs], True
    if isinstance(inputs, (bytes, bytearray)):
        raise TypeError("inputs must be a str or a list of str, not bytes")
    texts = list(inputs)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"inputs[{i}] must be a str, not {type(text).__name__}")
    return texts, False


def _chunks(texts: List[str]) -> Iterator[List[str]]:
    for begin in range(0, len(texts), MAX_INPUTS_PER_CALL):
        yield texts[begin:begin + MAX_INPUTS_PER_CALL]


def _request(**fields: Any) -> Dict[str, Any]:
    """A request body without the fields left at None (the engine's defaults)."""
    return {key: value for key, value in fields.items() if value is not None}


class Pipeline:
    """A task bound to a model; call it with one text or a list of texts. Thread-safe."""

    task: str = ""
    engine_task: str = ""  # the task name in the model's ``tasks``

    def __init__(self, model: Model) -> None:
        if self.engine_task not in model.tasks:
            serves = ", ".join(model.tasks) or "no task"
            raise Error(
                f"pipeline '{self.task}' needs a model that serves {self.engine_task}; "
                f"{model.path} ({model.architecture}) serves {serves}",
                status="TB_UNSUPPORTED", type="not_found", http_status=404)
        self.model = model

    def __repr__(self) -> str:
        return f"tinybert.pipeline({self.task!r}, {self.model!r})"


class FeatureExtractionPipeline(Pipeline):
    """Sentence embeddings with the model's pooling (bge: the [CLS] vector, L2-normalised).

    Unlike transformers' feature-extraction pipeline, which returns per-token hidden states
    (nested lists of shape [1, tokens, hidden] per text), this returns one pooled vector per
    text, as a float32 numpy array: shape (dimension,) for a str, (n, dimension) for a list.
    """

    task = "feature-extraction"
    engine_task = "embeddings"

    def __init__(self, model: Model, normalize: Optional[bool] = None) -> None:
        super().__init__(model)
        self.normalize = normalize

    def __call__(self, inputs: Inputs, normalize: Optional[bool] = None) -> np.ndarray:
        texts, single = _texts(inputs)
        vectors = self.model.embed(texts, normalize=self.normalize if normalize is None
                                   else normalize)
        return vectors[0] if single else vectors


class ZeroShotClassificationPipeline(Pipeline):
    """Zero-shot classification, transformers' ZeroShotClassificationPipeline shape.

    Call with ``candidate_labels`` (a list, or one str split on "," and "，"),
    optionally ``hypothesis_template`` (with ``{}`` for the label; default: the model's own) and
    ``multi_label``. tinybert's ``temperature``, ``threshold`` and ``calibrate`` are passed on
    (docs/api.md, /v1/classify). Returns ``{"sequence", "labels", "scores"}`` with the labels
    sorted best first, for one str; a list of those for a list.
    """

    task = "zero-shot-classification"
    engine_task = "classify"

    def __init__(self, model: Model, candidate_labels: Union[str, Sequence[str], None] = None,
                 hypothesis_template: Union[str, Sequence[str], None] = None,
                 multi_label: Optional[bool] = None, temperature: Optional[float] = None,
                 threshold: Optional[float] = None, calibrate: Optional[bool] = None) -> None:
        super().__init__(model)
        self.defaults = dict(candidate_labels=candidate_labels,
                             hypothesis_template=hypothesis_template, multi_label=multi_label,
                             temperature=temperature, threshold=threshold, calibrate=calibrate)

    def __call__(self, sequences: Inputs,
                 candidate_labels: Union[str, Sequence[str], None] = None, *,
                 hypothesis_template: Union[str, Sequence[str], None] = None,
                 multi_label: Optional[bool] = None, temperature: Optional[float] = None,
                 threshold: Optional[float] = None,
                 calibrate: Optional[bool] = None) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
        given = dict(candidate_labels=candidate_labels, hypothesis_template=hypothesis_template,
                     multi_label=multi_label, temperature=temperature, threshold=threshold,
                     calibrate=calibrate)
        o = {key: self.defaults[key] if value is None else value for key, value in given.items()}
        if o["candidate_labels"] is None:
            raise TypeError("zero-shot-classification needs candidate_labels")
        labels = o["candidate_labels"]
        if not isinstance(labels, str):
            labels = list(labels)
        texts, single = _texts(sequences)
        out: List[Dict[str, Any]] = []
        for chunk in _chunks(texts):
            request = _request(input=chunk, labels=labels, template=o["hypothesis_template"],
                               multi_label=o["multi_label"], temperature=o["temperature"],
                               threshold=o["threshold"], calibrate=o["calibrate"])
            for text, result in zip(chunk, self.model.classify(request)["results"]):
                out.append({"sequence": text,
                            "labels": [entry["label"] for entry in result["labels"]],
                            "scores": [entry["score"] for entry in result["labels"]]})
        return out[0] if single else out


class FillMaskPipeline(Pipeline):
    """Fill-mask, transformers' FillMaskPipeline shape.

    Per mask a list of ``top_k`` (default 5) candidates ``{"score", "token" (the id),
    "token_str", "sequence"}``; ``sequence`` is the text with this candidate in place of this
    mask (other masks left as ``[MASK]``; transformers gives its tokenizer's decoding instead,
    with spaces between Chinese characters). One mask: a list of candidates; several masks: a
    list of such lists; a list of texts: a list of those.
    """

    task = "fill-mask"
    engine_task = "fill-mask"

    def __init__(self, model: Model, top_k: int = 5) -> None:
        super().__init__(model)
        self.top_k = top_k

    def __call__(self, inputs: Inputs, top_k: Optional[int] = None) -> List[Any]:
        texts, single = _texts(inputs)
        out: List[Any] = []
        for chunk in _chunks(texts):
            response = self.model.fill_mask(input=chunk, top_k=top_k or self.top_k)
            for text, result in zip(chunk, response["results"]):
                masks = [[self._candidate(text, mask, c) for c in mask["candidates"]]
                         for mask in result["masks"]]
                out.append(masks[0] if len(masks) == 1 else masks)
        return out[0] if single else out

    @staticmethod
    def _candidate(text: str, mask: Mapping[str, Any], c: Mapping[str, Any]) -> Dict[str, Any]:
        token = str(c["token"])
        piece = token[2:] if token.startswith("##") else token
        return {"score": c["probability"], "token": c["id"], "token_str": token,
                "sequence": text[:mask["start"]] + piece + text[mask["end"]:]}


class InformationExtractionPipeline(Pipeline):
    """Information extraction in PaddleNLP Taskflow's shape (UIE and SiameseUIE models).

    ``schema`` as Taskflow takes it (a name, a list of names and {name: [children]} objects);
    ``position_prob`` (Taskflow's name; ``threshold`` works too) the span probability cut-off.
    Called with a str or a list of str, returns a list with one dict per text:
    ``{name: [{"text", "start", "end", "probability", "relations": {...}}]}`` (names without an
    answer left out, "relations" only where there are some).
    """

    task = "information-extraction"
    engine_task = "extract"

    def __init__(self, model: Model, schema: Any = None, position_prob: Optional[float] = None,
                 threshold: Optional[float] = None) -> None:
        super().__init__(model)
        if position_prob is not None and threshold is not None:
            raise TypeError("give position_prob or threshold, not both")
        self.schema = schema
        self.threshold = position_prob if threshold is None else threshold

    def set_schema(self, schema: Any) -> None:
        """Taskflow's ``ie.set_schema(schema)``."""
        self.schema = schema

    def __call__(self, inputs: Inputs, schema: Any = None) -> List[Dict[str, Any]]:
        schema = self.schema if schema is None else schema
        if schema is None:
            raise TypeError("information-extraction needs a schema (pipeline(..., schema=...))")
        texts, _ = _texts(inputs)
        out: List[Dict[str, Any]] = []
        for chunk in _chunks(texts):
            request = _request(input=chunk, schema=schema, threshold=self.threshold)
            out.extend(self.model.extract(request)["results"])
        return out


TASKS = {
    "feature-extraction": FeatureExtractionPipeline,
    "zero-shot-classification": ZeroShotClassificationPipeline,
    "fill-mask": FillMaskPipeline,
    "information-extraction": InformationExtractionPipeline,
    "information_extraction": InformationExtractionPipeline,  # PaddleNLP Taskflow's name
}


@overload
def pipeline(task: Literal["feature-extraction"], model: Union[Model, PathLike], *,
             backend: Optional[str] = None, **options: Any) -> FeatureExtractionPipeline: ...
@overload
def pipeline(task: Literal["zero-shot-classification"], model: Union[Model, PathLike], *,
             backend: Optional[str] = None, **options: Any) -> ZeroShotClassificationPipeline: ...
@overload
def pipeline(task: Literal["fill-mask"], model: Union[Model, PathLike], *,
             backend: Optional[str] = None, **options: Any) -> FillMaskPipeline: ...
@overload
def pipeline(task: Literal["information-extraction", "information_extraction"],
             model: Union[Model, PathLike], *, backend: Optional[str] = None,
             **options: Any) -> InformationExtractionPipeline: ...
@overload
def pipeline(task: str, model: Union[Model, PathLike], *, backend: Optional[str] = None,
             **options: Any) -> Pipeline: ...


def pipeline(task: str, model: Union[Model, PathLike], *, backend: Optional[str] = None,
             **options: Any) -> Pipeline:
    """A task bound to a model, called like transformers' / PaddleNLP's pipelines.

    Args:
        task: ``"feature-extraction"``, ``"zero-shot-classification"``, ``"fill-mask"``,
            ``"information-extraction"`` (or ``"information_extraction"``).
        model: a ``tinybert.Model``, or the path of a .tbw file (opened with ``backend``,
            default ``"int8"``).
        options: the task's defaults for every call (``candidate_labels``,
            ``hypothesis_template``, ``multi_label``, ``top_k``, ``schema``, ``position_prob``,
            ``normalize``...; see each pipeline class).

    Raises:
        ValueError: an unknown task.
        tinybert.Error: the model cannot be loaded or does not serve the task.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tinybert has {', '.join(TASKS)}")
    if isinstance(model, Model):
        if backend is not None:
            raise TypeError("backend= is for a model path; this Model is already loaded "
                            f"(backend {model.backend!r})")
    else:
        model = Model(model, backend=backend or DEFAULT_BACKEND)
    return TASKS[task](model, **options)
