"""The package as users install it: every package folder is listed in pyproject.toml (a folder left out would
be missing from wheels only), and the recipes ship inside it. The demo run from an installed wheel is
``tests/test_demo.py::test_demo_quick_runs_the_whole_path_from_an_installed_wheel``."""

from __future__ import annotations

from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed_in_pyproject():
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for top in ("text4seg", "data_builders")
        for p in (REPO / top).rglob("__init__.py")
    }
    found |= {"text4seg.recipes", "data_builders.templates", "text4seg.checkpoints.official_data"}  # data
    assert set(CONFIG["packages"]) == found


def test_the_recipes_ship_inside_the_package():
    assert CONFIG["package-dir"]["text4seg.recipes"] == "recipes"
    patterns = CONFIG["package-data"]["text4seg.recipes"]
    shipped = {p.name for pat in patterns for p in (REPO / "recipes").glob(pat)}
    assert {"demo.yaml", "grpo_demo.yaml", "text4seg_rewards.py", "text4seg_plugin.py"} <= shipped
    assert shipped == {p.name for p in (REPO / "recipes").iterdir() if p.is_file()}
