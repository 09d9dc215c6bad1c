"""The house's layout, checked from the source text (no faceid module is imported here).

- No ``.py`` file under ``faceid/`` over :data:`MAX_LINES` lines.
- No import cycles, and the floors in order: the ground floor (results, registry, errors) imports
  nothing above it, the gallery no pixel work, the product no measurement.
- No module reads another module's ``_``-prefixed names (``from x import _y``, ``mod._y``).
- The two galleries are told apart only inside ``faceid/gallery/``.

Where another engineer is removing today's offenders this round, the allowlists below name each
one (``file: name``), so that these tests pass now and fail on any new offender; shrink them as
the offenders go, never grow them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "faceid"
MAX_LINES = 600

#: Files over MAX_LINES today, each with the most lines it may have until it is split.
TOO_LONG_TODAY: dict[str, int] = {}

#: ``file: name`` pairs of a module reading another module's private name, left today: the gallery
#: contract (issue 17 b) and the one identify call (issue 17 c) remove them.
PRIVATE_READS_TODAY: set[str] = set()

#: Lines naming both gallery classes (or ``isinstance(..., Gallery)``) outside faceid/gallery/,
#: today: ``file: the code``. None since the gallery contract (issue 17 b).
GALLERY_UNIONS_TODAY: set[str] = set()


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the faceid package."""
    files = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


MODULES = _modules()


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def faceid_imports() -> dict[str, set[str]]:
    """Module -> the faceid modules it imports anywhere (top level, in functions, under TYPE_CHECKING)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from faceid.gallery import audit` imports the submodule, not (for this purpose) the package
                deps |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                    for a in node.names
                }
        graph[name] = {d for d in deps if d in MODULES and d != name}
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in graph[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


# -- sizes -----------------------------------------------------------------------------------------


def test_no_module_is_over_600_lines():
    sizes = {_rel(p): len(p.read_text(encoding="utf-8").splitlines()) for p in MODULES.values()}
    too_long = {f: n for f, n in sizes.items() if n > MAX_LINES and n > TOO_LONG_TODAY.get(f, 0)}
    assert too_long == {}, f"split these modules (at most {MAX_LINES} lines each): {too_long}"
    gone = {f for f in TOO_LONG_TODAY if sizes.get(f, 0) <= MAX_LINES}
    assert gone == set(), f"no longer over {MAX_LINES} lines: take them out of TOO_LONG_TODAY: {gone}"


# -- floors ----------------------------------------------------------------------------------------


def test_no_module_imports_itself_through_others():
    graph = faceid_imports()
    assert "faceid.results" in graph["faceid.draw"] and "faceid.identify" not in graph["faceid.draw"]
    cycles = sorted(name for name in graph if name in _reaches(graph, name))
    assert cycles == []


def test_the_ground_floor_imports_nothing_above_it():
    graph = faceid_imports()
    for low in ("faceid.results", "faceid.registry", "faceid.errors"):
        assert graph[low] <= {"faceid.errors"}, f"{low} imports {graph[low]}"
    assert "faceid.models" not in _reaches(graph, "faceid.embedding_key")


def test_the_gallery_keeps_bytes_and_never_does_pixel_work():
    graph = faceid_imports()
    pixel_work = {"faceid.align", "faceid.detect", "faceid.draw", "faceid.chips"}
    for name in MODULES:
        if name == "faceid.gallery" or name.startswith("faceid.gallery."):
            assert not graph[name] & pixel_work, f"{name} imports {graph[name] & pixel_work}"


def test_the_product_does_not_import_the_measurements():
    """faceid.bench and faceid.eval measure the product; the product never needs them (calibrate
    reads the FPIR threshold of faceid.eval.fpir, the one protocol piece it shares)."""
    graph = faceid_imports()
    allowed = {"faceid.calibrate": {"faceid.eval.fpir"}}
    for name, deps in graph.items():
        if name.startswith(("faceid.bench", "faceid.eval", "faceid.cli")):
            continue  # the measurements themselves, and the CLI that runs them
        measuring = {d for d in deps if d.startswith(("faceid.bench", "faceid.eval"))}
        assert measuring <= allowed.get(name, set()), f"{name} imports {measuring}"


# -- private names ---------------------------------------------------------------------------------


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_reads(code: str, rel: str, module: str) -> set[str]:
    """``rel: name`` for each private name of another faceid module that ``code`` (the text of
    module ``module``, file ``rel``) reads: imported
    by name (``from faceid.x import _y``), or read as an attribute of an imported faceid module
    (``x._y`` after ``from faceid import x`` or ``import faceid.x as x``). Private modules of the
    package (``faceid._files``, ``faceid.bench._common``) are the package's own and may be imported."""
    tree = ast.parse(code)
    found: set[str] = set()
    bound: dict[str, str] = {}  # local name -> faceid module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("faceid"):
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in MODULES:
                    bound[a.asname or a.name] = full
                elif _private(a.name) and node.module != module:
                    found.add(f"{rel}: {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES and a.asname:
                    bound[a.asname] = a.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in bound
            and bound[node.value.id] != module
            and _private(node.attr)
            and f"{bound[node.value.id]}.{node.attr}" not in MODULES
        ):
            found.add(f"{rel}: {node.attr}")
    return found


def test_the_private_name_check_finds_what_it_should():
    code = (
        "from faceid.gallery import _barred_from\n"
        "from faceid import batch, _files\n"
        "from faceid.bench import _common as common\n"
        "import faceid.batch as b\n"
        "from faceid.probe import _own\n"
        "x = batch._image_failures(1) + common.figure('a') + batch.__name__ + b._x + _files.atomic_write_bytes\n"
    )
    found = private_reads(code, "probe.py", "faceid.probe")
    assert found == {"probe.py: _barred_from", "probe.py: _image_failures", "probe.py: _x"}


def test_no_module_reads_another_modules_private_names():
    found: set[str] = set()
    for module, path in MODULES.items():
        found |= private_reads(path.read_text(encoding="utf-8"), _rel(path), module)
    new = found - PRIVATE_READS_TODAY
    assert new == set(), f"make these names public, or keep the reading inside their module: {sorted(new)}"
    gone = PRIVATE_READS_TODAY - found
    assert gone == set(), f"fixed: take them out of PRIVATE_READS_TODAY: {sorted(gone)}"


# -- one gallery contract ---------------------------------------------------------------------------

GALLERY_UNION = re.compile(
    r"Union\[\s*Gallery\s*,\s*MilvusGallery\s*\]|Union\[\s*MilvusGallery\s*,\s*Gallery\s*\]"
    r"|\bGallery\s*\|\s*MilvusGallery\b|\bMilvusGallery\s*\|\s*Gallery\b"
    r"|isinstance\([^()]*,\s*\(?[^()]*\b(?:Milvus)?Gallery\b"
)


def gallery_unions() -> set[str]:
    found = set()
    for path in MODULES.values():
        if _rel(path).startswith("gallery/"):
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if GALLERY_UNION.search(line):
                found.add(f"{_rel(path)}: {line.strip()}")
    return found


def test_the_gallery_check_finds_what_it_should():
    for line in (
        "AnyGallery = Union[Gallery, MilvusGallery]",
        "def f(g: Gallery | MilvusGallery): ...",
        "if isinstance(gallery, Gallery):",
        "if isinstance(g, (Gallery, MilvusGallery)):",
    ):
        assert GALLERY_UNION.search(line), line
    assert not GALLERY_UNION.search("def f(g: GalleryBackend): ...")


def test_the_galleries_are_told_apart_only_inside_the_gallery_package():
    found = gallery_unions()
    new = found - GALLERY_UNIONS_TODAY
    assert new == set(), f"use the gallery contract instead: {sorted(new)}"
    gone = GALLERY_UNIONS_TODAY - found
    assert gone == set(), f"fixed: take them out of GALLERY_UNIONS_TODAY: {sorted(gone)}"
