"""Packaging: one import namespace. Every package folder is listed in pyproject under gstore.*."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_installs_under_gstore():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    mapping = cfg["package-dir"]
    assert set(mapping) == {"gstore", "gstore.pipeline", "gstore.train"}
    found = set()
    for top, name in (("gstore", "gstore"), ("pipeline", "gstore.pipeline"), ("train", "gstore.train")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            found.add(".".join((name, *rel)))
    assert found == listed, f"unlisted: {found - listed}, stale: {listed - found}"
    assert all(p.split(".")[0] == "gstore" for p in listed)


def test_namespace_imports():
    import gstore.pipeline.loader
    import gstore.train.loop

    assert Path(gstore.pipeline.loader.__file__).parent.parent.name == "pipeline"
