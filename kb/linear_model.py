"""What the two fitted models shipped in kb/ share: a linear score over standardised features, fitted offline
for one embedding model and stored as JSON beside the code (kb/refusal_model.json, kb/sentence_model.json).

    z(x) = ((x − mean) / scale) · coef + intercept

`StandardizedLinear` holds the fitted numbers and scores with them; `read_fitted` reads a model file and
returns its fields only when it was fitted for the same FEATURES (anything else, a missing or malformed file
included, is None: the caller then falls back to its hand-set rule). kb/refusal.py and kb/sentence_model.py
add what each model means (a threshold on P(answerable); the answer-selection thresholds).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class StandardizedLinear:
    model_id: str                  # the embedding model the coefficients were fitted for
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def logits(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale) @ self.coef + self.intercept

    def applies_to(self, model_id: str | None) -> bool:
        """Same weights: "m3e-small@onnx" is m3e-small run by another backend (kb.onnx_embed)."""
        return model_id is not None and model_id.split("@", 1)[0] == self.model_id

    def fields(self, features) -> dict:
        """The JSON fields every model file has (`read_fitted` reads them back)."""
        return {"model_id": self.model_id, "features": list(features), "mean": self.mean.tolist(),
                "scale": self.scale.tolist(), "coef": self.coef.tolist(), "intercept": self.intercept}


def read_fitted(path: str | Path, features) -> tuple[dict, dict] | None:
    """(StandardizedLinear's keyword arguments, the whole file) of a model file fitted for `features`; None
    when the file is missing, malformed or fitted for other features."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
        if tuple(d["features"]) != tuple(features):
            return None
        return {"model_id": d["model_id"], "mean": np.array(d["mean"]), "scale": np.array(d["scale"]),
                "coef": np.array(d["coef"]), "intercept": float(d["intercept"])}, d
    except (OSError, ValueError, KeyError, TypeError):
        return None
