"""Loading models and tokenizers the same way in every stage (generate, train, evaluate)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import torch


def pick_device(device: str = "auto") -> str:
    """auto: the GPU of this process's local rank (one per process under torchrun/accelerate), else the CPU."""
    if device != "auto":
        return device
    return f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu"


def device_problem(device: str) -> str | None:
    """Why `device` (generate.device) is not on this machine, found before any model loads (None: it is, or auto/cpu).
    torch only finds out when the first model moves there: a traceback in M0's evaluation ("Torch not compiled with
    CUDA enabled") or, for cuda:N past the visible GPUs, an invalid device ordinal."""
    if device in ("auto", "cpu"):
        return None
    if device == "mps":
        return None if torch.backends.mps.is_available() else "no MPS device here (Apple silicon): use auto or cpu"
    if not torch.cuda.is_available():
        build = "" if torch.version.cuda else ", a build without CUDA"
        return f"no CUDA GPU is visible (torch {torch.__version__}{build}): use auto (a GPU where there is one) or cpu"
    index, gpus = device.partition(":")[2], torch.cuda.device_count()
    if index.isdigit() and int(index) >= gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        return (f"{gpus} GPU{'s are' if gpus != 1 else ' is'} visible (CUDA_VISIBLE_DEVICES={visible}): "
                f"cuda:0 to cuda:{gpus - 1}")
    return None


def release_memory(collect: bool = True) -> None:
    """Give freed memory back to the system: collect garbage (unless `collect` is false: tensors are freed when
    their last reference goes, the collector only finds cycles), then have the allocator return its free pages.
    Freed tensors otherwise stay in the process's heap (kept for reuse, fragmented), and the next stage, the next
    training step's optimizer states or a training worker stack on them. Under mimalloc (the pipeline's allocator,
    pipeline ``preload_allocator``) a full release (`collect`, after each model stage) makes it collect and purge
    its free pages now rather than a second later; under glibc's malloc, ``malloc_trim`` returns the heap's."""
    import ctypes
    import gc

    if collect:
        gc.collect()
    process = ctypes.CDLL(None)
    mi_collect = getattr(process, "mi_collect", None)  # mimalloc's, when it is the process's allocator
    if mi_collect is not None:
        if collect:
            mi_collect.argtypes = [ctypes.c_bool]
            mi_collect(True)
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16: bf16 matmuls are fast on this CPU (elsewhere they are emulated and slow)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    """"auto": bf16 on a GPU that supports it or on a CPU with native bf16, else fp32."""
    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_bf16() else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None


def load_tokenizer(path: str, padding_side: str = "left"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    if not tok.chat_template:
        raise ValueError(f"{path}: the tokenizer has no chat template (every stage prompts the model as a chat): use "
                         "an instruct/chat model, or put a chat_template.jinja in the model folder")
    return tok


def load_model(path: str, dtype: str = "auto", device: str = "auto"):
    from transformers import AutoModelForCausalLM

    device = pick_device(device)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, device))
    return model.to(device).eval()


def cache_keyword(model) -> str:
    """The keyword the model's forward takes its KV cache under: `cache` in newer transformers (5.24), which
    deprecates `past_key_values` (removed in 5.40: passed there, it would fall into **kwargs and each decoding step
    would see one token without its context); `past_key_values` in older ones (5.20, the vllm extra's pin)."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def fingerprint(model) -> str:
    """A short hash of the model's weights (a few tensors, in fp32): which model produced a dataset."""
    h = hashlib.sha256()
    params = list(model.state_dict().items())
    for name, t in params[:2] + params[-2:]:
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes()[:1 << 20])
    return h.hexdigest()[:16]


def stop_token_ids(tok, model) -> list[int]:
    ids = {tok.eos_token_id}
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    ids |= set(gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos])
    return sorted(i for i in ids if i is not None)
