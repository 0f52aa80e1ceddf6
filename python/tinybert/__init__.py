"""tinybert: BERT-family encoder inference (bge, BERT MLM, UIE, SiameseUIE, NLI) from Python.

    >>> import tinybert
    >>> model = tinybert.Model("models/bge-small-zh-v1.5.tbw")        # int8 by default
    >>> model.embed(["今天天气真好。", "明天会下雨吗？"]).shape
    (2, 512)
    >>> classifier = tinybert.pipeline("zero-shot-classification", model)
    >>> out = classifier("今天的足球比赛非常精彩", candidate_labels=["体育", "财经"])
    >>> out["labels"][0]
    '体育'

The engine is C++ (one extension module, tinybert._native, with the engine linked in); every call
releases the GIL, and one Model may be shared by many threads. docs/python.md has the whole API.
"""

from ._errors import Error
from ._model import Model, convert
from ._native import version as _native_version
from ._pipelines import (
    FeatureExtractionPipeline,
    FillMaskPipeline,
    InformationExtractionPipeline,
    Pipeline,
    ZeroShotClassificationPipeline,
    pipeline,
)

__version__: str = _native_version()
__all__ = [
    "Error",
    "FeatureExtractionPipeline",
    "FillMaskPipeline",
    "InformationExtractionPipeline",
    "Model",
    "Pipeline",
    "ZeroShotClassificationPipeline",
    "convert",
    "pipeline",
    "__version__",
]
