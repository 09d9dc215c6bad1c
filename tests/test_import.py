import subprocess
import sys

import faceid


def test_import_is_light():
    heavy = "('tensorflow', 'mtcnn', 'faiss', 'keras', 'onnxruntime', 'onnx')"
    code = f"import sys, faceid; faceid.Gallery; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_public_api_resolves():
    for name in faceid.__all__:
        assert getattr(faceid, name) is not None, name
    assert issubclass(faceid.ImageError, ValueError)
    assert issubclass(faceid.ModelIntegrityError, faceid.ModelError)
    assert issubclass(faceid.ModelMismatchError, faceid.GalleryError)


def test_help_does_not_load_tensorflow():
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom faceid.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# The import graph's checks (no cycles, floors in order) are in test_architecture.py.
