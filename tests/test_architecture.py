"""Data flows one way (DESIGN.md, "The flow"): no module imports from a layer above its own.

Every ``import``/``from ... import`` of a graphrec module, at module level or inside a function, is
an edge between two units (a sub-package or a top-level module of graphrec); an edge must point to
the same or a lower layer."""
import ast
import os

import graphrec

ROOT = os.path.dirname(graphrec.__file__)

# lowest first; a unit may import units of its own layer or lower ones
LAYERS = [
    {"errors", "utils", "native", "stats"},
    {"data"},
    {"datasets", "graphs"},
    {"nn", "losses", "environment"},
    {"models"},
    {"eval"},
    {"train"},
    {"config", "rundir", "experiment", "compare"},
    {"bench"},
    {"commands", "cli", "__main__"},
]
LEVEL = {u: i for i, layer in enumerate(LAYERS) for u in layer}


def _unit(module: str) -> str:
    return module.split(".")[1]


def _sources():
    for dirpath, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                yield path, os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")


def _edges(sources=None):
    for path, rel in sources or _sources():
        if rel == "graphrec.__init__":
            continue  # the package root may re-export anything
        src = _unit(rel)
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "graphrec":
                    targets = [f"graphrec.{a.name}" for a in node.names]
                elif node.module.startswith("graphrec."):
                    targets = [node.module]
                else:
                    continue
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("graphrec.")]
            else:
                continue
            for t in targets:
                yield path, node.lineno, src, _unit(t)


def test_every_unit_has_a_layer():
    units = {src for _, _, src, _ in _edges()} | {dst for _, _, _, dst in _edges()}
    assert units - set(LEVEL) == set(), "add the new unit to LAYERS (and to DESIGN.md's flow)"


def test_imports_never_point_up_the_flow():
    bad = [f"{os.path.relpath(p, ROOT)}:{line}: {src} imports {dst}"
           for p, line, src, dst in _edges() if LEVEL.get(dst, -1) > LEVEL.get(src, 99)]
    assert not bad, "\n".join(bad)


def test_the_check_sees_an_upward_import(tmp_path):
    # the checker is not vacuous: a model module importing the trainer inside a function is flagged
    planted = tmp_path / "planted.py"
    planted.write_text("import torch\n\ndef f():\n    from graphrec.train.trainer import Trainer\n")
    edges = list(_edges([(str(planted), "graphrec.models.planted")]))
    assert [(src, dst) for _, _, src, dst in edges if LEVEL[dst] > LEVEL[src]] == [("models", "train")]
