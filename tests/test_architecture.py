"""The layout's rules, read from the source with ``ast`` (nothing is imported):

- no import cycle between ``core`` modules, counting module-level and function-level
  imports alike (a cycle hidden inside a function is still a circle in the design);
- the layers in the order ``ARCHITECTURE.md`` declares (its "Layers" list, read here): a
  module imports its own layer or lower ones, function-level imports included, except the
  reach-backs listed there;
- no Streamlit anywhere in ``core/`` (it is a plain library: notebooks, scripts, CLI);
- pages (``app_pages/``, ``streamlit_app.py``) use only public ``core`` names, through the
  packages' faces (the names in a package's ``__all__``) or the foundation modules; the faces
  resolve every name they export and import nothing heavy (these two tests do import);
- the test suite's own rules: helpers come from ``tests.helpers``, never from ``conftest``,
  and a test that needs ``../shared`` carries the ``real`` (or ``browser``) marker, so the
  fast tier runs anywhere.

Each checker is also run on a small made-up tree, so a checker that stopped seeing
anything would fail here too.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.helpers import REPO

PAGES = sorted([*(REPO / "app_pages").rglob("*.py"), REPO / "streamlit_app.py"])


# ---------------------------------------------------------------- reading imports

def module_name(path: Path, root: Path) -> str:
    """``core/nets/explain.py`` -> ``core.nets.explain``; ``core/nets/__init__.py`` -> ``core.nets``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def imported(tree: ast.AST, module: str, path: Path):
    """Every import anywhere in the tree (module level, functions, classes, branches):
    ``(line, dotted module, names imported from it or None)``; relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = package_of(module, path).split(".")
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base, [alias.name for alias in node.names]


def module_graph(root: Path, top: str = "core") -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """``{module: {imported core module: line}}`` for every module under ``root/top``.
    ``from core.x import y`` is an edge to ``core.x.y`` when that is a module, else to ``core.x``."""
    files = {module_name(p, root): p for p in sorted((root / top).rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {m: {} for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, target, names in imported(tree, module, path):
            if target != top and not target.startswith(top + "."):
                continue
            targets = [f"{target}.{n}" if f"{target}.{n}" in files else target for n in names] if names else [target]
            for t in targets:
                while t not in files and "." in t:  # import core.x.missing -> core.x
                    t = t.rpartition(".")[0]
                if t in files and t != module:
                    graph[module][t] = min(line, graph[module].get(t, line))  # the first import of t
    return graph, files


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component with more than one module."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def connect(v):  # Tarjan, recursive: core/ is a few dozen modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    found = []
    for component in components:
        start = min(component)
        paths, queue, cycle = {start: [start]}, [start], None
        for v in queue:  # breadth first: the shortest way back to start
            for w in sorted(graph[v]):
                if w == start:
                    cycle = paths[v] + [start]
                    break
                if w in component and w not in paths:
                    paths[w] = paths[v] + [w]
                    queue.append(w)
            if cycle:
                break
        found.append(cycle)
    return found


def describe(cycle: list[str], graph, files, root: Path = REPO) -> str:
    """``core.a (line 3 of core/a.py) -> core.b (line 9 of core/b.py) -> core.a``."""
    steps = [f"{a} (line {graph[a][b]} of {files[a].relative_to(root).as_posix()})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join([*steps, cycle[-1]])


def streamlit_imports(root: Path, top: str = "core") -> list[str]:
    """Every import of streamlit under ``root/top``, also through importlib / __import__."""
    found = []
    for path in sorted((root / top).rglob("*.py")):
        module = module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = path.relative_to(root).as_posix()
        for line, target, _ in imported(tree, module, path):
            if target.split(".")[0] == "streamlit":
                found.append(f"{where}:{line} imports {target}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str) and node.args[0].value.split(".")[0] == "streamlit"
                    and (getattr(node.func, "attr", None) == "import_module"
                         or getattr(node.func, "id", None) in ("import_module", "__import__"))):
                found.append(f"{where}:{node.lineno} imports {node.args[0].value} dynamically")
    return found


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_core_uses(pages: list[Path], root: Path, top: str = "core") -> list[str]:
    """Private ``core`` names a page imports (``from core.x import _y``, a ``_module`` in the
    path) or reads off an imported core module (``x._y``)."""
    modules = {module_name(p, root) for p in (root / top).rglob("*.py")}
    found = []
    for path in pages:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = path.relative_to(root).as_posix()
        bound: dict[str, str] = {}  # local name -> core module it is
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != top:
                        continue
                    if any(private(p) for p in alias.name.split(".")):
                        found.append(f"{where}:{node.lineno} imports {alias.name}")
                    bound[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if node.module.split(".")[0] != top:
                    continue
                if any(private(p) for p in node.module.split(".")):
                    found.append(f"{where}:{node.lineno} imports from {node.module}")
                for alias in node.names:
                    if private(alias.name):
                        found.append(f"{where}:{node.lineno} imports {node.module}.{alias.name}")
                    elif f"{node.module}.{alias.name}" in modules:
                        bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and private(node.attr):
                chain, value = [node.attr], node.value
                while isinstance(value, ast.Attribute):
                    chain.append(value.attr)
                    value = value.value
                if isinstance(value, ast.Name) and value.id in bound:
                    found.append(f"{where}:{node.lineno} reads {bound[value.id]}.{'.'.join(reversed(chain))}")
    return found


def face_exports(init: Path) -> list[str]:
    """A package's ``__all__`` as its ``__init__.py`` spells it: a list of strings, where ``*NAME``
    splices a dict's keys or a list assigned above (``__all__ = ["jobs", *_NAMES]``); [] without one."""
    tree = ast.parse(init.read_text(encoding="utf-8"), str(init))
    values = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name)}
    if "__all__" not in values:
        return []
    names = []
    for element in values["__all__"].elts:
        if isinstance(element, ast.Starred):
            names += list(ast.literal_eval(values[element.value.id]))
        else:
            names.append(ast.literal_eval(element))
    return names


def faces(root: Path = REPO, top: str = "core") -> dict[str, set[str]]:
    """``{package: the names of its face}`` for every package directly under ``root/top``."""
    return {f"{top}.{init.parent.name}": set(face_exports(init)) for init in sorted((root / top).glob("*/__init__.py"))}


def face_violations(pages: list[Path], root: Path, top: str = "core") -> list[str]:
    """Where a page reaches into ``core`` past a package's face: a deep import (``from core.runs.store
    import RunStore``), a name the face does not export (imported, or read off a bound face:
    ``report.x``), or a module directly under ``core`` that is neither a face nor a foundation module."""
    exports = faces(root, top)
    foundation = {f"{top}.{p.stem}" for p in (root / top).glob("*.py") if p.stem not in ("__init__", "__main__")}

    def step(module: str, name: str, where: str, verb: str) -> str | None:
        """Check ``module.name``; returns the module it is when a face or a foundation module, else None."""
        target = f"{module}.{name}"
        if module == top:
            if target not in exports and target not in foundation:
                found.append(f"{where} {verb} {target}: neither a package's face nor a foundation module")
                return None
            return target
        if module in exports and name not in exports[module]:
            found.append(f"{where} {verb} {target}: not in the face of {module} (its __all__)")
        return None

    found = []
    for path in pages:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        name_of = path.relative_to(root).as_posix()
        bound: dict[str, str] = {}  # local name -> core, a face or a foundation module
        for node in ast.walk(tree):
            where = f"{name_of}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] != top:
                        continue
                    if len(parts) > 2 or (len(parts) == 2 and step(top, parts[1], where, "imports") is None):
                        if len(parts) > 2:
                            found.append(f"{where} imports {alias.name}, past the face of {'.'.join(parts[:2])}")
                        continue
                    bound[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                parts = node.module.split(".")
                if parts[0] != top:
                    continue
                if len(parts) > 2:
                    found.append(f"{where} imports from {node.module}, past the face of {'.'.join(parts[:2])}")
                    continue
                for alias in node.names:
                    if alias.name != "*":
                        target = step(node.module, alias.name, where, "imports")
                        if target:
                            bound[alias.asname or alias.name] = target
        outer = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in outer:
                continue
            chain, value = [], node
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            module = bound.get(value.id) if isinstance(value, ast.Name) else None
            for attr in reversed(chain):
                if module is None:
                    break
                module = step(module, attr, f"{name_of}:{node.lineno}", "reads")
    return sorted(set(found))


KERAS_INTERNALS = {"_keras_history", "_run_through_graph", "_nodes_by_depth", "_inbound_nodes", "_outbound_nodes",
                   "_operations", "_tensor_dict", "_functional", "_layers", "_tracker", "_trainable_variables"}


def private_keras_uses(paths: list[Path], root: Path) -> list[str]:
    """Keras internals the code reaches for: ``keras.src`` imports and the graph's private
    attributes (a Keras upgrade may change them without notice)."""
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        where = path.relative_to(root).as_posix()
        for line, target, _ in imported(tree, module_name(path, root), path):
            if target.startswith(("keras.src", "tf_keras.src")) or target.startswith("tensorflow.python.keras"):
                found.append(f"{where}:{line} imports {target}")
        for node in ast.walk(tree):
            name = node.attr if isinstance(node, ast.Attribute) else None
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "hasattr", "setattr")
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)):
                name = node.args[1].value
            if name in KERAS_INTERNALS:
                found.append(f"{where}:{node.lineno} uses {name}")
    return found


# ---------------------------------------------------------------- the layers

def declared_layers(text: str) -> tuple[list[str], set[str], set[tuple[str, str]]]:
    """From ``ARCHITECTURE.md``'s "Layers" list: the layers lowest first, the entry-point modules
    (processes start there, above every layer) and the reach-backs ``(importer, imported)``."""
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^- (layers, lowest first|entry points|reach-backs): (.*)$",
                                                           text, re.M)}
    assert set(lines) == {"layers, lowest first", "entry points", "reach-backs"}, "ARCHITECTURE.md lost its layer list"
    layers = re.findall(r"`([\w]+)`", lines["layers, lowest first"])
    entries = set(re.findall(r"`(core[\w.]*)`", lines["entry points"]))
    backs = set(re.findall(r"`(core[\w.]*)` -> `(core[\w.]*)`", lines["reach-backs"]))
    return layers, entries, backs


def layer_of(module: str, files: dict[str, Path], entries: set[str]) -> str:
    """``core.train.fit`` -> ``train``; a module directly under ``core/`` -> ``foundation``."""
    if module in entries:
        return "entry"
    parts = module.split(".")
    if len(parts) == 2 and files[module].name != "__init__.py":
        return "foundation"
    return parts[1] if len(parts) > 1 else "entry"


def layer_violations(graph, files, layers: list[str], entries: set[str], backs: set[tuple[str, str]],
                     root: Path = REPO) -> list[str]:
    """Every import of a higher layer that is not a declared reach-back, and every declared reach-back
    that no longer exists (the list stays true)."""
    rank = {name: i for i, name in enumerate(layers)}
    found, used = [], set()
    for module, targets in sorted(graph.items()):
        for target, line in sorted(targets.items()):
            low, high = layer_of(module, files, entries), layer_of(target, files, entries)
            for name in (low, high):
                if name not in rank:
                    found.append(f"{module} is in no declared layer ({name})")
            if rank.get(high, -1) > rank.get(low, len(rank)):
                if (module, target) in backs:
                    used.add((module, target))
                else:
                    found.append(f"{files[module].relative_to(root).as_posix()}:{line}: {module} ({low}) imports "
                                 f"{target} ({high}), a higher layer")
    found += [f"declared reach-back {a} -> {b} is gone: take it off the list" for a, b in sorted(backs - used)]
    return sorted(set(found))


# ---------------------------------------------------------------- the checkers on a made-up tree

def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checkers_find_what_they_should(tmp_path):
    root = write_tree(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "from core.b import thing\n",
        "core/b.py": "def f():\n    from . import c\n",  # function-level, relative
        "core/c.py": "import core.a\n",
        "core/d.py": "from core import a, b\nif False:\n    import streamlit as st\n",
        "core/sub/__init__.py": "from .e import E\n",
        "core/sub/e.py": "import importlib\nst = importlib.import_module('streamlit.runtime')\nfrom core.sub import f\n",
        "core/sub/f.py": "def g():\n    from core.sub.e import x\n",
        "app_pages/page.py": ("from core import a\nfrom core.b import _hidden, public\nimport core.sub.e as e\n"
                              "from core.sub._private import y\nx = a._secret + e.public + a.__name__\n"),
        "streamlit_app.py": "from core.sub import e\ne._inner.ok()\n",
    })
    graph, files = module_graph(root)
    assert graph["core.d"] == {"core.a": 1, "core.b": 1}
    assert graph["core.b"] == {"core.c": 2}
    found = sorted(cycles(graph))
    assert found == [["core.a", "core.b", "core.c", "core.a"], ["core.sub.e", "core.sub.f", "core.sub.e"]], found
    assert describe(found[0], graph, files, root) == (
        "core.a (line 1 of core/a.py) -> core.b (line 2 of core/b.py) -> core.c (line 1 of core/c.py) -> core.a")
    assert streamlit_imports(root) == ["core/d.py:3 imports streamlit",
                                       "core/sub/e.py:2 imports streamlit.runtime dynamically"]
    keras_user = write_tree(tmp_path / "k", {"core/g.py": (
        "from keras.src.models import functional\ndef f(model, t):\n"
        "    return getattr(t, '_keras_history', None), model._run_through_graph, model.layers\n")})
    assert sorted(private_keras_uses([keras_user / "core" / "g.py"], keras_user)) == [
        "core/g.py:1 imports keras.src.models", "core/g.py:3 uses _keras_history", "core/g.py:3 uses _run_through_graph"]
    pages = [root / "app_pages" / "page.py", root / "streamlit_app.py"]
    assert private_core_uses(pages, root) == [
        "app_pages/page.py:2 imports core.b._hidden",
        "app_pages/page.py:4 imports from core.sub._private",
        "app_pages/page.py:5 reads core.a._secret",
        "streamlit_app.py:2 reads core.sub.e._inner",
    ]


# ---------------------------------------------------------------- the rules on the real tree

def test_no_import_cycle_in_core():
    graph, files = module_graph(REPO)
    assert len(graph) > 20 and sum(map(len, graph.values())) > 20, "the scan does not see core's modules"
    found = cycles(graph)
    assert not found, "import cycles in core/:\n" + "\n".join(describe(c, graph, files) for c in found)


def test_the_layer_check_finds_a_back_import(tmp_path):
    """A deliberately added back-import fails the check; declaring it as a reach-back passes it;
    a declared reach-back that is gone fails it too."""
    root = write_tree(tmp_path, {
        "core/__init__.py": "", "core/errors.py": "",
        "core/data/__init__.py": "", "core/data/scan.py": "from core import errors\n",
        "core/train/__init__.py": "", "core/train/fit.py": "from core.data import scan\n",
        "core/runs/__init__.py": "", "core/runs/worker.py": "from core.train import fit\n",
    })
    doc = ("- layers, lowest first: `foundation`, `data`, `train`, `runs`, `entry`\n"
           "- entry points: `core.runs.worker`\n- reach-backs: none\n")
    layers, entries, backs = declared_layers(doc)
    assert (layers, entries, backs) == (["foundation", "data", "train", "runs", "entry"], {"core.runs.worker"}, set())
    graph, files = module_graph(root)
    assert layer_violations(graph, files, layers, entries, backs, root) == []
    (root / "core/data/scan.py").write_text("from core import errors\n\n\ndef late():\n    from core.train import fit\n")
    graph, files = module_graph(root)
    assert layer_violations(graph, files, layers, entries, backs, root) == [
        "core/data/scan.py:5: core.data.scan (data) imports core.train.fit (train), a higher layer"]
    declared = declared_layers(doc.replace("reach-backs: none", "reach-backs: `core.data.scan` -> `core.train.fit` (why)"))
    assert layer_violations(graph, files, *declared, root) == []
    (root / "core/data/scan.py").write_text("from core import errors\n")
    graph, files = module_graph(root)
    assert layer_violations(graph, files, *declared, root) == [
        "declared reach-back core.data.scan -> core.train.fit is gone: take it off the list"]


def test_core_keeps_the_declared_layer_order():
    layers, entries, backs = declared_layers((REPO / "ARCHITECTURE.md").read_text(encoding="utf-8"))
    graph, files = module_graph(REPO)
    found = layer_violations(graph, files, layers, entries, backs)
    assert not found, "imports against the layer order of ARCHITECTURE.md:\n" + "\n".join(found)


def unexplained_lazy_imports(root: Path = REPO, top: str = "core") -> list[str]:
    """Imports of ``core`` modules inside functions that do not say why on their line (``# lazy: ...``):
    module level is the rule; an import deferred into a function must break a real start-up cost."""
    found = []
    for path in sorted((root / top).rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines, module = text.splitlines(), module_name(path, root)
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for line, target, _ in imported(fn, module, path):
                if (target == top or target.startswith(top + ".")) and "lazy:" not in lines[line - 1]:
                    found.append(f"{path.relative_to(root)}:{line} imports {target} in a function")
    return sorted(set(found))


def test_the_lazy_import_check_finds_an_unexplained_one(tmp_path):
    root = write_tree(tmp_path, {
        "core/__init__.py": "",
        "core/a.py": "def f():\n    from core import b  # lazy: starts TensorFlow\n    import json\n",
        "core/b.py": "def g():\n    from core.a import f\n    return f\n",
    })
    assert unexplained_lazy_imports(root) == ["core/b.py:2 imports core.a in a function"]


def test_every_function_level_core_import_says_why():
    found = unexplained_lazy_imports()
    assert not found, "imports of core modules in functions without a '# lazy: reason':\n" + "\n".join(found)


def test_core_never_imports_streamlit():
    assert not streamlit_imports(REPO), streamlit_imports(REPO)


def test_no_keras_internals_in_the_code():
    """Grad-CAM and everything else go through public Keras (issue 16)."""
    code = sorted({*(REPO / "core").rglob("*.py"), *PAGES, *(REPO / "benchmarks").rglob("*.py")})
    found = private_keras_uses(code, REPO)
    assert not found, found


def test_the_face_check_finds_what_it_should(tmp_path):
    root = write_tree(tmp_path, {
        "core/__init__.py": "", "core/__main__.py": "", "core/errors.py": "",
        "core/runs/__init__.py": '_NAMES = {"RunStore": "store"}\n__all__ = ["jobs", "store", *_NAMES]\n',
        "core/runs/store.py": "", "core/runs/jobs.py": "", "core/runs/hidden.py": "",
        "core/report/__init__.py": '__all__ = ["build"]\ndef build(): pass\ndef other(): pass\n',
        "core/empty/__init__.py": "",
        "app_pages/good.py": ("from core import errors, report, runs\nfrom core.errors import Oops\n"
                              "from core.runs import RunStore, jobs\nimport core.runs as r\n"
                              "x = report.build(), runs.jobs.submit, r.RunStore, jobs.anything, errors.Oops\n"),
        "app_pages/bad.py": ("from core.runs.store import RunStore\nfrom core.runs import hidden, Missing\n"
                             "import core.runs.jobs\nfrom core import __main__, nothing\n"
                             "def f():\n    from core import report as rep\n    return rep.other(), rep.build()\n"),
        "streamlit_app.py": ("import core\nfrom core.empty import x\n"
                             "y = core.runs.RunStore, core.runs.hidden.z, core.errors.E\n"),
    })
    assert faces(root) == {"core.runs": {"jobs", "store", "RunStore"}, "core.report": {"build"}, "core.empty": set()}
    pages = [root / "app_pages" / "good.py", root / "app_pages" / "bad.py", root / "streamlit_app.py"]
    assert face_violations(pages[:1], root) == []
    assert face_violations(pages, root) == [
        "app_pages/bad.py:1 imports from core.runs.store, past the face of core.runs",
        "app_pages/bad.py:2 imports core.runs.Missing: not in the face of core.runs (its __all__)",
        "app_pages/bad.py:2 imports core.runs.hidden: not in the face of core.runs (its __all__)",
        "app_pages/bad.py:3 imports core.runs.jobs, past the face of core.runs",
        "app_pages/bad.py:4 imports core.__main__: neither a package's face nor a foundation module",
        "app_pages/bad.py:4 imports core.nothing: neither a package's face nor a foundation module",
        "app_pages/bad.py:7 reads core.report.other: not in the face of core.report (its __all__)",
        "streamlit_app.py:2 imports core.empty.x: not in the face of core.empty (its __all__)",
        "streamlit_app.py:3 reads core.runs.hidden: not in the face of core.runs (its __all__)",
    ]


def test_pages_use_only_public_core_names():
    """Through the faces: ``from core.runs import RunStore, jobs``, never ``from core.runs.store import ...``;
    no private name either (``jobs._x``)."""
    assert len(PAGES) > 5 and all(p.is_file() for p in PAGES)
    found = private_core_uses(PAGES, REPO) + face_violations(PAGES, REPO)
    assert not found, "pages reaching into core past its public faces:\n" + "\n".join(found)


def test_every_name_a_face_exports_resolves(monkeypatch):
    """``getattr(core.runs, name)`` works for each name in ``__all__`` (a submodule is the module, any
    other name is not), and a face hands out the deep module's current attribute, never a kept copy."""
    found = faces()
    assert {"core.data", "core.nets", "core.features", "core.train", "core.runs", "core.serve",
            "core.analysis"} <= set(found)
    for package, names in found.items():
        module = importlib.import_module(package)
        assert names and set(module.__all__) == names, package
        for name in sorted(names):
            is_submodule = (REPO / package.replace(".", "/") / f"{name}.py").is_file()
            assert isinstance(getattr(module, name), ModuleType) == is_submodule, f"{package}.{name}"
            assert name in dir(module)
    runs, store = importlib.import_module("core.runs"), importlib.import_module("core.runs.store")
    with pytest.raises(AttributeError):
        runs.no_such_name
    stand_in = object()
    monkeypatch.setattr(store, "RunStore", stand_in)
    assert runs.RunStore is stand_in
    monkeypatch.undo()
    assert runs.RunStore is store.RunStore


def test_importing_the_faces_and_the_cli_starts_no_tensorflow():
    """A face costs nothing: importing every one of them (and the CLI, for ``--help``) in a fresh
    process loads neither TensorFlow nor Keras."""
    modules = [*sorted(faces()), "core.__main__"]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


# ---------------------------------------------------------------- the test suite's own rules

TESTS = sorted((REPO / "tests").rglob("*.py"))


def conftest_imports(paths: list[Path], root: Path = REPO) -> list[str]:
    found = []
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for line, target, _ in imported(tree, module_name(path, root), path):
            if target == "tests.conftest":
                found.append(f"{path.relative_to(root).as_posix()}:{line} imports {target}")
    return found


def test_helpers_come_from_tests_helpers_not_conftest(tmp_path):
    """tests/conftest.py is pytest's (fixtures); importing it as a module runs it a second
    time under another name. (tests/browser/conftest.py still lends its server and browser
    helpers to a few browser modules; they are not covered here yet.)"""
    made_up = write_tree(tmp_path, {
        "tests/test_a.py": "from .conftest import write_images\nfrom tests.helpers import REPO\n",
        "tests/test_b.py": "def f():\n    from tests.conftest import REPO\n",
        "tests/browser/test_c.py": "from .conftest import chromium\n",
    })
    assert conftest_imports(sorted(made_up.rglob("test_*.py")), made_up) == [
        "tests/test_a.py:1 imports tests.conftest", "tests/test_b.py:2 imports tests.conftest"]
    found = conftest_imports(TESTS)
    assert not found, "import helpers from tests.helpers instead:\n" + "\n".join(found)


SHARED_NAMES = {"SHARED", "SHARED_WEIGHTS", "CATS_VS_DOGS"}  # tests.helpers' paths into ../shared
SHARED_FIXTURES = {"shared_assets", "cats_vs_dogs", "real_home"}
OWN_TIER = {"real", "browser"}  # the browser tier's server always gets ../shared


def marks(nodes) -> set[str]:
    return {n.attr for node in nodes for n in ast.walk(node)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"}


def unmarked_shared_tests(path: Path, root: Path = REPO) -> list[str]:
    """Tests in ``path`` that reach ../shared (a fixture or a path constant, also through the
    module's own fixtures and helpers) without a ``real`` or ``browser`` mark."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    module_marks = marks([n.value for n in tree.body if isinstance(n, ast.Assign)
                          and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)])
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}

    def reaches(fn, seen: frozenset) -> bool:
        args = {a.arg for a in fn.args.args}
        names = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}
        if args & SHARED_FIXTURES or names & SHARED_NAMES:
            return True
        return any(reaches(functions[n], seen | {n}) for n in (args | names) & set(functions) - seen)

    found = []
    for name, fn in functions.items():
        if name.startswith("test_") and not (marks(fn.decorator_list) | module_marks) & OWN_TIER:
            if reaches(fn, frozenset({name})):
                found.append(f"{path.relative_to(root).as_posix()}::{name}")
    return found


def test_the_marker_check_finds_what_it_should(tmp_path):
    write_tree(tmp_path, {
        "tests/test_x.py": (
            "import pytest\nfrom tests.helpers import SHARED_WEIGHTS\n"
            "@pytest.fixture\ndef weights():\n    return SHARED_WEIGHTS\n"
            "def test_plain():\n    assert 1\n"
            "def test_through_a_fixture(weights):\n    assert weights\n"
            "def test_fixture(cats_vs_dogs):\n    pass\n"
            "@pytest.mark.real\ndef test_marked(shared_assets):\n    pass\n"),
        "tests/test_y.py": "import pytest\npytestmark = [pytest.mark.browser]\ndef test_b(shared_assets):\n    pass\n",
    })
    assert unmarked_shared_tests(tmp_path / "tests" / "test_x.py", tmp_path) == [
        "tests/test_x.py::test_through_a_fixture", "tests/test_x.py::test_fixture"]
    assert unmarked_shared_tests(tmp_path / "tests" / "test_y.py", tmp_path) == []


def test_tests_that_need_shared_assets_are_marked():
    found = [f for path in TESTS if path.name.startswith("test_") for f in unmarked_shared_tests(path)]
    assert not found, f"mark these @pytest.mark.real (they read ../shared): {found}"


def environment_uses(paths) -> list[str]:
    """``file:line`` of every ``os.environ`` / ``os.getenv`` use in ``paths`` (reads and writes)."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
                    and node.attr in ("environ", "getenv", "putenv", "unsetenv")):
                found.append(f"{path}:{node.lineno}")
    return found


def test_the_environment_is_read_only_in_settings(tmp_path):
    """Configuration in one place: every variable is read in core/settings.py, and nothing in
    core/ or the pages writes the environment (choices travel as arguments or context)."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("import os\nx = os.environ.get('A')\nos.environ['B'] = '1'\n")
    assert len(environment_uses([tmp_path / "pkg" / "m.py"])) == 2  # the checker sees both
    sources = [p for p in (REPO / "core").rglob("*.py") if p != REPO / "core" / "settings.py"] + PAGES
    assert environment_uses(sources) == []
