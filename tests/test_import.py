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


def _faceid_imports() -> dict[str, set[str]]:
    """Module -> the faceid modules it imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    import ast
    from pathlib import Path

    root = Path(faceid.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from faceid.gallery import audit` imports the submodule, not (for this purpose) the package
                deps |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module for a in node.names
                }
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def test_no_module_imports_itself_through_others():
    graph = _faceid_imports()
    assert "faceid.results" in graph["faceid.draw"] and "faceid.identify" not in graph["faceid.draw"]

    def reaches(start: str, target: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            for dep in graph[todo.pop()]:
                if dep == target:
                    return True
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return False

    cycles = sorted(name for name in graph if reaches(name, name))
    assert cycles == []
