"""The type stubs (memshare/__init__.pyi) describe the module as it is:
every class, method, property and function they name exists, and every
public name of the module is in them."""

import ast
from pathlib import Path

import memshare

STUBS = Path(memshare.__file__).with_name("__init__.pyi")


def stub_tree():
    return ast.parse(STUBS.read_text())


def test_the_stubs_are_installed_with_py_typed():
    assert STUBS.exists()
    assert STUBS.with_name("py.typed").exists()


def test_every_stubbed_name_exists():
    missing = []
    for node in stub_tree().body:
        if isinstance(node, ast.ClassDef):
            if node.name.startswith("_"):
                continue
            cls = getattr(memshare, node.name, None)
            if cls is None:
                missing.append(node.name)
                continue
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                    if not hasattr(cls, item.name):
                        missing.append(f"{node.name}.{item.name}")
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            inherited = {"_Lent": ["tobytes", "address", "released", "readonly"],
                         "_Closable": ["close", "closed"]}
            for base, names in inherited.items():
                if base in bases:
                    missing += [f"{node.name}.{n}" for n in names if not hasattr(cls, n)]
        elif isinstance(node, ast.FunctionDef) and not hasattr(memshare, node.name):
            missing.append(node.name)
    assert not missing, f"in the stubs, not in the module: {missing}"


def test_every_public_name_is_stubbed():
    stubbed = set()
    for node in stub_tree().body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            stubbed.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stubbed.add(node.target.id)
        elif isinstance(node, ast.Assign):
            stubbed |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    public = {n for n in dir(memshare) if not n.startswith("_") or n == "__version__"}
    public.discard("memshare")  # none, but keep the check honest
    assert public - stubbed == set(), f"not in the stubs: {public - stubbed}"


def test_every_public_class_has_a_docstring():
    for n in dir(memshare):
        obj = getattr(memshare, n)
        if isinstance(obj, type) and not n.startswith("_"):
            assert obj.__doc__, n
