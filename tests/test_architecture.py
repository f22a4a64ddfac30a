"""The package's rooms and the directions imports may take between them.

Each room says in its docstring which rooms it may import (``May import: zoo, shift.``); the
base modules (``errors``, ``resources``, ``atomic``) are open to all and import only each other. This test
reads every import in the package (module level and inside functions), and fails on an import
against those directions, on a private name imported from another module, and on an import
cycle between modules. It also plants each kind of fault in a copy of the package and checks
that the checker sees it.
"""
from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import autodsnn

PACKAGE = Path(autodsnn.__file__).resolve().parent
BASE = {"errors", "resources", "atomic", "_deprecated", "__init__"}
EVERY = "every room"


def _modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package at ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return "cli" if parts[1] == "__main__" else parts[1]  # `python -m autodsnn` is the command line


def _room_docstring(root: Path, room: str) -> str:
    path = root / room / "__init__.py" if (root / room).is_dir() else root / f"{room}.py"
    return ast.get_docstring(ast.parse(path.read_text())) or ""


def _allowed(root: Path, rooms: set[str]) -> dict[str, set[str] | str]:
    """Room -> the rooms its docstring says it may import (or EVERY)."""
    rules: dict[str, set[str] | str] = {}
    for room in rooms - BASE:
        match = re.search(r"May import: ([^.]*)\.", " ".join(_room_docstring(root, room).split()))
        assert match, f"room {room!r} does not say what it may import ('May import: ...' in its docstring)"
        words = match.group(1).strip()
        rules[room] = EVERY if words == EVERY else set() if words.startswith("nothing") else \
            {w.strip() for w in words.split(",")}
    return rules


def _imports(module: str, path: Path, is_package: bool) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import, relative ones resolved."""
    out = []
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.append((node.lineno, base, [alias.name for alias in node.names]))
    return out


def architecture_faults(root: Path) -> list[str]:
    """Every import against the rooms' rules, private name crossing modules, and import cycle."""
    modules = _modules(root)
    name = root.name
    rules = _allowed(root, {_room(m) for m in modules})
    faults, edges = [], {m: set() for m in modules}
    for module, path in modules.items():
        own = _room(module)
        for line, target, names in _imports(module, path, path.name == "__init__.py"):
            if target != name and not target.startswith(name + "."):
                continue
            where = f"{path.relative_to(root.parent)}:{line}"
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            targets = [f"{target}.{n}" if f"{target}.{n}" in modules else target for n in names] or [target]
            for t in set(targets):
                if t in modules and t != module:
                    edges[module].add(t)
                room = _room(t)
                rule = rules.get(own)
                crosses = room != own and room not in BASE
                if own in BASE and crosses and own != "__init__":
                    faults.append(f"{where}: base module {module} imports {t} (base modules import only each other)")
                elif crosses and rule is not None and rule != EVERY and room not in rule:
                    faults.append(f"{where}: {own} imports {room} ({t}), but {own} may import only "
                                  f"{', '.join(sorted(rule)) or 'nothing'}")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                faults.append(f"{where}: {module} imports private {', '.join(private)} from {target}")
    faults += [f"import cycle: {' -> '.join(c)}" for c in _cycles(edges)]
    return faults


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component larger than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_imports_follow_the_rooms_directions():
    assert architecture_faults(PACKAGE) == []


def test_every_room_says_what_it_is_and_may_import():
    rooms = {_room(m) for m in _modules(PACKAGE)} - BASE
    assert rooms == {"shift", "zoo", "trial", "store", "search", "analysis", "cli"}
    for room in rooms:
        first_line = _room_docstring(PACKAGE, room).splitlines()[0]
        assert "May import:" in first_line, (room, first_line)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "autodsnn"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return root


def _plant(root: Path, relative: str, line: str) -> None:
    path = root / relative
    path.write_text(path.read_text() + "\n" + line + "\n")


def test_checker_sees_a_planted_import_against_the_direction(tmp_path):
    root = _copy(tmp_path)
    _plant(root, "zoo/models.py", "def _late():\n    from ..search import optimize  # the zoo reaching up")
    faults = architecture_faults(root)
    against = [f for f in faults if "zoo imports search" in f]
    assert len(against) == 1 and "zoo/models.py" in against[0]
    # search reaches the zoo, so the planted import also closes a circle
    assert all(f in against or f.startswith("import cycle:") for f in faults), faults


def test_checker_sees_a_planted_private_import_and_cycle(tmp_path):
    root = _copy(tmp_path)
    _plant(root, "trial/loop.py", "from .run import train_trial")   # run -> training -> loop -> run
    _plant(root, "store.py", "from .trial.hparams import _hp")
    faults = architecture_faults(root)
    assert any(f.startswith("import cycle:") and "autodsnn.trial.loop" in f for f in faults), faults
    assert any("imports private _hp from autodsnn.trial.hparams" in f for f in faults), faults


def test_checker_sees_the_shift_library_reaching_out(tmp_path):
    root = _copy(tmp_path)
    _plant(root, "shift/cost.py", "import autodsnn.zoo.models")
    assert any("shift imports zoo" in f for f in architecture_faults(root))
