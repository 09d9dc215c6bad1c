"""What made an embedding: the key a gallery, a threshold table and the cache are tied to.

Two embeddings can be compared only if the same network, with the same weights, saw the same kind
of crop. :class:`EmbeddingKey` names all of it: the model id, its weights' SHA-256, the embedding
dimension (from the model's spec), the crop method and crop margin, mirror averaging, and the face
detector whose landmarks and boxes place the crop (MTCNN or YuNet: the same face aligned from each
gives embeddings that differ measurably, docs/detectors.md). A gallery
stores the key of its first embedding and refuses any other; the default thresholds are measured
per key (:mod:`faceid.thresholds`); the evaluation cache keys embeddings by it.

The crop margin (how much of the face's surroundings a crop includes, a fraction of the detected
box) is a property of the key. It is not the decision margin (how far the named person must lead
the runner-up, :data:`faceid.thresholds.DECISION_MARGIN`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from faceid.errors import EmbeddingKeyError

__all__ = ["ALIGN_METHODS", "DEFAULT_ALIGN", "DEFAULT_CROP_MARGIN", "DEFAULT_MIRROR", "EmbeddingKey"]

#: Crop methods (see :mod:`faceid.align`); a model's spec names the one it was trained with.
ALIGN_METHODS = ("margin", "similarity", "arcface-112")

#: Defaults chosen by measurement on LFW (docs/accuracy.md, "Choosing the defaults").
DEFAULT_ALIGN = "margin"
DEFAULT_CROP_MARGIN = 0.1
DEFAULT_MIRROR = False

#: The detector of every key that names none: galleries, caches and tables made before keys
#: recorded the detector were all made with MTCNN. A key with this detector writes no
#: ``detector`` field, so its JSON text (and every hash of it) is what it was before.
DEFAULT_KEY_DETECTOR = "mtcnn"
KEY_DETECTORS = ("mtcnn", "yunet")

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class EmbeddingKey:
    """Everything that changes an embedding; equal keys mean comparable embeddings.

    Build one with :meth:`for_model`, which takes the weights' hash and the dimension from the
    model registry. Construction validates every field (:class:`~faceid.errors.EmbeddingKeyError`),
    and a key naming a registered model must agree with that model's spec.

    Attributes:
        model: registry id of the embedding model (``faceid models list``).
        weights_sha256: SHA-256 of the weight file the model runs.
        dimension: length of the embedding rows.
        align: crop method, ``"margin"``, ``"similarity"`` or ``"arcface-112"`` (the 112x112
            ArcFace template that SFace and ArcFace take).
        crop_margin: for ``"margin"``, how far the crop extends past the detected box, as a fraction
            of the box; ``None`` for ``"similarity"``, whose framing is fixed.
        mirror: each face's embedding is averaged with its mirror image's.
        detector: ``"mtcnn"`` or ``"yunet"``, the detector whose landmarks and boxes align the crops.
    """

    model: str
    weights_sha256: str
    dimension: int
    align: str = DEFAULT_ALIGN
    crop_margin: float | None = DEFAULT_CROP_MARGIN
    mirror: bool = DEFAULT_MIRROR
    detector: str = DEFAULT_KEY_DETECTOR

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise EmbeddingKeyError(f"embedding key: model must be a model id, got {self.model!r}")
        if not isinstance(self.weights_sha256, str) or not _SHA256.fullmatch(self.weights_sha256):
            raise EmbeddingKeyError(f"embedding key: weights_sha256 must be 64 hex digits, got {self.weights_sha256!r}")
        if isinstance(self.dimension, bool) or not isinstance(self.dimension, int) or self.dimension < 1:
            raise EmbeddingKeyError(f"embedding key: dimension must be a positive integer, got {self.dimension!r}")
        if self.align not in ALIGN_METHODS:
            raise EmbeddingKeyError(
                f"embedding key: unknown crop method {self.align!r}; choose one of {', '.join(ALIGN_METHODS)}"
            )
        if self.align == "margin":
            margin = self.crop_margin
            if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0.0 <= margin <= 1.0:
                raise EmbeddingKeyError(f"embedding key: crop margin must be between 0 and 1, got {margin!r}")
            object.__setattr__(self, "crop_margin", float(margin))
        elif self.crop_margin is not None:
            raise EmbeddingKeyError(f"embedding key: crop method {self.align!r} takes no crop margin")
        if not isinstance(self.mirror, bool):
            raise EmbeddingKeyError(f"embedding key: mirror must be true or false, got {self.mirror!r}")
        if self.detector not in KEY_DETECTORS:
            raise EmbeddingKeyError(
                f"embedding key: unknown detector {self.detector!r}; choose one of {', '.join(KEY_DETECTORS)}"
            )
        self._check_registry()

    def _check_registry(self) -> None:
        from faceid.registry import MODELS

        spec = MODELS.get(self.model)
        if spec is None:  # a model this version does not know: the key is kept, nothing can embed with it
            return
        if spec.kind != "embedding":
            raise EmbeddingKeyError(f"embedding key: {self.model} is a face {spec.kind}, not an embedding model")
        if spec.sha256 != self.weights_sha256 or spec.dimension != self.dimension:
            raise EmbeddingKeyError(
                f"embedding key: model {self.model} has {spec.dimension}-d embeddings from weights "
                f"{spec.sha256[:12]}..., not {self.dimension}-d from {self.weights_sha256[:12]}..."
            )

    @classmethod
    def for_model(
        cls,
        model: str | None = None,
        *,
        align: str | None = None,
        crop_margin: float | None = DEFAULT_CROP_MARGIN,
        mirror: bool = DEFAULT_MIRROR,
        detector: str | None = None,
    ) -> EmbeddingKey:
        """The key of a registered model (default: faceid's) with these crop settings and detector
        (default: :data:`DEFAULT_KEY_DETECTOR`).

        ``align`` defaults to the model's own crop (``spec.alignment``); ``crop_margin`` is ignored
        for crop methods that have none.
        """
        from faceid.registry import DEFAULT_MODEL, get_spec

        spec = get_spec(model or DEFAULT_MODEL)
        if spec.kind != "embedding":
            raise EmbeddingKeyError(f"embedding key: {spec.name} is a face {spec.kind}, not an embedding model")
        align = align if align is not None else spec.alignment
        return cls(
            spec.name,
            spec.sha256,
            spec.dimension,
            align,
            crop_margin if align == "margin" else None,
            bool(mirror),
            detector or DEFAULT_KEY_DETECTOR,
        )

    def to_json(self) -> dict:
        """A JSON-ready dict; :meth:`from_json` reads it back. The detector is written only where it
        is not MTCNN, so an MTCNN key's JSON is the same as before keys named a detector."""
        data = {
            "model": self.model,
            "weights_sha256": self.weights_sha256,
            "dimension": self.dimension,
            "align": self.align,
            "crop_margin": self.crop_margin,
            "mirror": self.mirror,
        }
        if self.detector != DEFAULT_KEY_DETECTOR:
            data["detector"] = self.detector
        return data

    def dumps(self) -> str:
        """Canonical JSON text (sorted keys): what galleries and caches store and hash."""
        return json.dumps(self.to_json(), sort_keys=True)

    @classmethod
    def from_json(cls, value: dict | str) -> EmbeddingKey:
        """Read :meth:`to_json`'s dict (or its text), or the dict galleries stored before this key existed
        (``model``, ``dimension``, ``align``, ``margin``, ``mirror``: the weights are the registry's).

        Raises:
            EmbeddingKeyError: not a key, or a field is invalid.
        """
        try:
            data = json.loads(value) if isinstance(value, str) else dict(value)
        except (TypeError, ValueError) as exc:
            raise EmbeddingKeyError(f"embedding key: not a JSON object ({exc})") from None
        if not isinstance(data, dict):
            raise EmbeddingKeyError(f"embedding key: not a JSON object: {value!r}")
        if "weights_sha256" not in data and "model" in data:  # the dict of faceid 0.1
            from faceid.registry import MODELS

            spec = MODELS.get(data["model"])
            if spec is None:
                raise EmbeddingKeyError(f"embedding key: unknown model {data['model']!r} in a key without weights")
            data = {
                "model": data["model"],
                "weights_sha256": spec.sha256,
                "dimension": data.get("dimension"),
                "align": data.get("align"),
                "crop_margin": data.get("margin"),
                "mirror": data.get("mirror"),
            }
        fields = ("model", "weights_sha256", "dimension", "align", "crop_margin", "mirror")
        unknown = sorted(set(data) - set(fields) - {"detector"})
        missing = [f for f in fields if f not in data]
        if unknown or missing:
            raise EmbeddingKeyError(
                f"embedding key: {'unknown fields ' + ', '.join(unknown) if unknown else ''}"
                f"{'; ' if unknown and missing else ''}{'missing fields ' + ', '.join(missing) if missing else ''}"
            )
        return cls(**{f: data[f] for f in fields}, detector=data.get("detector", DEFAULT_KEY_DETECTOR))

    def describe(self) -> str:
        """One line for people: ``facenet-20170512-110547 (128-d), margin crop 0.1, mirror``."""
        crop = f"margin crop {self.crop_margin:g}" if self.align == "margin" else f"{self.align} alignment"
        found = ", YuNet detector" if self.detector == "yunet" else ""
        return f"{self.model} ({self.dimension}-d), {crop}{', mirror' if self.mirror else ''}{found}"

    def differences(self, other: EmbeddingKey) -> list[str]:
        """Names of the fields in which ``other`` differs from this key."""
        mine = {**self.to_json(), "detector": self.detector}
        theirs = {**other.to_json(), "detector": other.detector}
        return [name for name in mine if mine[name] != theirs[name]]
