"""The package as a user installs it: a built wheel carries every preset, and an installed dasvit finds
them from any directory (not only from an editable checkout beside presets/)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO


def _source_tree(dst):
    """The repository's files as a clean clone has them (no .git, runs or build output)."""
    shutil.copytree(
        REPO,
        dst,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".git", "runs", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "data", "tests"
        ),
    )
    return dst


def test_wheel_ships_every_preset_and_the_installed_package_loads_them(tmp_path):
    src = _source_tree(tmp_path / "src")
    out = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("dasvit-*.whl")
    presets = sorted(p.name for p in (REPO / "presets").glob("*.yaml"))
    assert presets and "demo.yaml" in presets
    with zipfile.ZipFile(wheel) as z:
        shipped = sorted(n.split("/")[-1] for n in z.namelist() if n.startswith("dasvit/presets/"))
        assert shipped == presets
        modules = {n for n in z.namelist() if n.endswith(".py")}
        for sub in (
            "dasvit/focus/",
            "dasvit/model/",
            "dasvit/search/",
            "dasvit/train/",
            "dasvit/run/",
            "dasvit/reports/",
            "dasvit_tui/screens/",
            "dasvit_tui/widgets/",
        ):
            assert any(n.startswith(sub) for n in modules), f"the wheel lacks {sub}"
        site = tmp_path / "site"
        z.extractall(site)
    # an installed copy, imported from elsewhere: every preset loads by name
    # and every module of both packages (subpackages too) imports from the wheel, the ImageNet-100 class list with them
    code = (
        "import dasvit, dasvit.run.presets as c, pkgutil, importlib, dasvit_tui; print(dasvit.__file__); "
        "print(','.join(c.preset_names())); [c.load_config(n) for n in c.preset_names()]; "
        "[importlib.import_module(m.name) for p in (dasvit, dasvit_tui) "
        "for m in pkgutil.walk_packages(p.__path__, p.__name__ + '.') if not m.name.endswith('__main__')]"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    where, names = res.stdout.split()
    assert where.startswith(str(site)) and names.split(",") == [p.removesuffix(".yaml") for p in presets]


def test_the_marker_the_readme_names_selects_tests_the_default_run_leaves_out(pytestconfig):
    """README: "heavier checks are marked slow and left out; pytest -m slow runs them". The marker it names
    is registered, the default run deselects it (addopts), and test functions carry it (`pytest -m slow`
    exits 5, "no tests ran", when none does). Read from the sources: collecting them costs seconds."""
    import ast
    import re

    marker = re.search(r"pytest -m (\w+)", (REPO / "README.md").read_text()).group(1)
    assert any(m.startswith(f"{marker}:") for m in pytestconfig.getini("markers"))
    addopts = pytestconfig.getini("addopts")
    assert f"not {marker}" == addopts[addopts.index("-m") + 1]

    def marked(func: ast.AST) -> bool:
        return any(
            isinstance(d, ast.Attribute) and d.attr == marker and ast.unparse(d.value) == "pytest.mark"
            for d in getattr(func, "decorator_list", [])
        )

    selected = [
        f"{path.name}::{node.name}"
        for path in sorted((REPO / "tests").glob("test_*.py"))
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test") and marked(node)
    ]
    assert len(selected) >= 2, selected
