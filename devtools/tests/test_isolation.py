"""No product module imports devtools: the test and benchmark tooling stays out of the product packages
(their tests, conftest.py files and migrations excepted)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT_PACKAGES = ("chat", "speakers", "voice", "magicmirror", "live")
SKIPPED_DIRS = {"tests", "migrations", "__pycache__"}


def _is_devtools(name: str) -> bool:
    return name == "devtools" or name.startswith("devtools.")


def devtools_imports(source: str, filename: str = "<source>") -> list[int]:
    """The line numbers in `source` that import devtools or a module of it (`import devtools...`,
    `from devtools... import ...`, or importlib.import_module / __import__ with a literal name)."""
    lines = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found = any(_is_devtools(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found = node.level == 0 and _is_devtools(node.module or "")
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            found = called in ("import_module", "__import__") and _is_devtools(str(node.args[0].value))
        else:
            continue
        if found:
            lines.append(node.lineno)
    return sorted(lines)


def product_modules(root: Path = ROOT) -> list[Path]:
    """Every .py file of the product packages under `root` that is not a test, a conftest.py or a migration."""
    modules = []
    for package in PRODUCT_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).parts
            if path.name != "conftest.py" and not SKIPPED_DIRS.intersection(parts[:-1]):
                modules.append(path)
    return modules


def offenders(root: Path = ROOT) -> dict[str, list[int]]:
    """{path relative to root: lines} of the product modules that import devtools."""
    found = {}
    for path in product_modules(root):
        lines = devtools_imports(path.read_text(encoding="utf-8"), str(path))
        if lines:
            found[str(path.relative_to(root))] = lines
    return found


def test_no_product_module_imports_devtools():
    modules = product_modules()
    assert ROOT / "chat" / "models.py" in modules and ROOT / "magicmirror" / "settings.py" in modules
    assert not any("tests" in path.parts or path.name == "conftest.py" for path in modules)
    assert offenders() == {}, "product modules must not import devtools (test and benchmark tooling)"


def test_the_checker_finds_every_form_of_import():
    source = """
import os
import devtools
import json, devtools.fake_llm as fake
from devtools import samples
from devtools.localprocs import free_port


def later():
    from devtools.benchmarks import voice_loop
    import importlib

    importlib.import_module("devtools.services")
    __import__("devtools")
"""
    assert devtools_imports(source) == [3, 4, 5, 6, 10, 13, 14]


def test_the_checker_ignores_what_is_not_devtools():
    source = """
import devtoolsmith
from devtoolsmith import devtools
from chat import devtools_notes
from . import devtools
from .devtools import thing
import importlib
importlib.import_module("voice.devtools")
print("import devtools")
"""
    assert devtools_imports(source) == []


def test_a_product_module_importing_devtools_is_reported(tmp_path):
    (tmp_path / "voice" / "tests").mkdir(parents=True)
    (tmp_path / "voice" / "migrations").mkdir()
    (tmp_path / "voice" / "audio.py").write_text("import wave\n")
    (tmp_path / "voice" / "jobs.py").write_text('"""Jobs."""\n\nfrom devtools.fake_llm import Reply\n')
    (tmp_path / "voice" / "tests" / "test_jobs.py").write_text("from devtools import samples\n")
    (tmp_path / "voice" / "migrations" / "0001_initial.py").write_text("import devtools\n")
    (tmp_path / "voice" / "conftest.py").write_text("import devtools\n")
    # "live" and the other packages do not exist here: skipped.
    assert offenders(tmp_path) == {"voice/jobs.py": [3]}
