"""Generate: N sampled chain-of-thought completions per prompt from one model (HF transformers backend).

Prompts are rendered with the model's chat template, sorted by length and batched (``batch_size`` prompts
x ``num_samples`` sequences per forward) so little compute goes to padding; each batch is seeded with
``seed + batch index``, so the same inputs and config give the same completions. Decoding is the stage's own
loop (``decode``) over the model's KV cache rather than ``model.generate``: each prompt is encoded once and its
cache repeated for its samples, a finished sequence leaves the batch, and top-p sampling finds the nucleus
among the 1024 most likely tokens and draws from it instead of sorting and drawing over the whole vocabulary
(measured: those two took a third of generation time). Greedy decoding gives exactly ``generate``'s tokens;
sampling draws from the same nucleus distribution, but not the same tokens as ``generate`` for a given seed. ``temperature: 0`` is
greedy decoding (one completion per prompt). Runs on CPU or GPU (``device``); ``dtype: auto`` picks bf16
where the hardware does it natively (a CUDA GPU, or a CPU with AVX512-BF16) and fp32 elsewhere — bf16
changes the numerics, not the algorithm.

    from stages.generate import GenerateConfig, generate
    recs, stats = generate("path/to/model", [{"prompt_id": "a", "messages": [...]}], GenerateConfig())

A model named ``py:package.module:function`` is a Python callable instead of a checkpoint (an API model, or a
scripted stand-in in tests): it is called once as ``function(prompts, cfg)`` and returns, for each prompt,
a list of ``num_samples`` completion strings. Every stage that prompts a model (generate, judge,
self-instruct, evaluation judges) goes through here, so each of them accepts such a model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from stages.modeling import cache_keyword, fingerprint, load_model, load_tokenizer, stop_token_ids


DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")


def _check_engine(backend: str, vllm: dict, dtype: str, device: str, where: str) -> None:
    if backend not in ("hf", "vllm"):
        raise ValueError(f"{where}.backend must be 'hf' or 'vllm', got {backend!r}")
    if dtype not in DTYPES:
        raise ValueError(f"{where}.dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if not (device in ("auto", "cpu", "cuda", "mps") or (str(device).startswith("cuda:") and device[5:].isdigit())):
        raise ValueError(f"{where}.device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")
    if backend == "vllm":
        from stages.vllm_client import VllmOptions

        VllmOptions.parse(vllm)


@dataclass
class Engine:
    """How every model call of a run is executed — sampling, self-instruct, the judges, the meta-judge and the
    evaluation all go through `generate` with the run's one engine (the ``generate`` group's backend, vllm options,
    dtype and device), each with its own sampling parameters (`sampling`)."""

    backend: str = "hf"  # hf (transformers, in this process) | vllm (vLLM worker processes, GPU)
    vllm: dict = field(default_factory=dict)  # backend=vllm: python, tensor_parallel_size, data_parallel_size, ...
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        _check_engine(self.backend, self.vllm, self.dtype, self.device, "generate")

    def sampling(self, **params) -> "GenerateConfig":
        """A GenerateConfig for one kind of call: this engine plus the call's sampling parameters."""
        return GenerateConfig(backend=self.backend, vllm=dict(self.vllm), dtype=self.dtype, device=self.device, **params)


@dataclass
class GenerateConfig:
    num_samples: int = 4  # completions per prompt, N (paper: 30 GSM8K/ARC, 20 MATH)
    temperature: float = 0.8  # 0 = greedy (paper: 0.8 in iterations 1-2, 1.0-1.3 later)
    top_p: float = 0.95
    max_new_tokens: int = 256  # per completion
    batch_size: int = 16  # prompts per forward pass (each expanded to num_samples sequences)
    seed: int = 0
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    backend: str = "hf"  # hf (transformers, in this process) | vllm (a vLLM worker process per call, GPU)
    vllm: dict = field(default_factory=dict)  # backend=vllm: python, tensor_parallel_size, data_parallel_size, ...

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"generate.num_samples must be >= 1, got {self.num_samples}")
        if self.temperature < 0:
            raise ValueError(f"generate.temperature must be >= 0, got {self.temperature}")
        if self.temperature == 0 and self.num_samples != 1:
            raise ValueError("generate.temperature=0 (greedy) gives identical samples: set num_samples=1")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"generate.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("generate.max_new_tokens and generate.batch_size must be >= 1")
        _check_engine(self.backend, self.vllm, self.dtype, self.device, "generate")

    @property
    def engine(self) -> Engine:
        """The run's engine: the other model-calling stages sample with it (pipeline/config.py hands it to them)."""
        return Engine(self.backend, dict(self.vllm), self.dtype, self.device)


def generate(model_path: str, prompts: list[dict], cfg: GenerateConfig, desc: str = "generate",
             model=None, tokenizer=None, shard: tuple[int, int] = (0, 1)) -> tuple[list[dict], dict]:
    """prompts: records with prompt_id and messages (chat format). Returns (records, stats): one record per
    (prompt, sample) with prompt_id, sample_idx, completion, num_tokens, finish_reason ("stop" | "length").
    shard=(rank, world_size): this process takes batches rank, rank + world_size, ... (data-parallel generation
    under the runner; `merge_shards` puts the parts back in prompt order). Batches and their seeds do not depend
    on the number of processes, so the merged result is the one a single process gives."""
    t0 = time.time()
    if str(model_path).startswith("py:"):
        return _generate_py(str(model_path), prompts, cfg, t0)
    if cfg.backend == "vllm":
        from stages.vllm_client import generate_vllm

        return generate_vllm(model_path, prompts, cfg, desc)
    tok = tokenizer or load_tokenizer(model_path)
    model = model if model is not None else load_model(model_path, cfg.dtype, cfg.device)
    stops = stop_token_ids(tok, model)
    texts = [chat_prompt(tok, p["messages"]) for p in prompts]
    continued = [p["messages"][-1]["role"] == "assistant" for p in prompts]
    ids = [tok(t, add_special_tokens=False).input_ids for t in texts]
    order = sorted(range(len(prompts)), key=lambda i: -len(ids[i]))
    out: dict[int, list[dict]] = {}
    n_tokens = 0
    rank, world = shard
    batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    mine = [(b, idx) for b, idx in enumerate(batches) if b % world == rank]
    bar = tqdm(total=sum(len(idx) for _, idx in mine), desc=desc + (f" [rank {rank}/{world}]" if world > 1 else ""),
               unit="prompt", dynamic_ncols=True)
    for b, idx in mine:
        batch = tok.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt").to(model.device)
        torch.manual_seed(cfg.seed + b)
        new = decode(model, batch["input_ids"], batch["attention_mask"], cfg, stops, tok.pad_token_id).cpu()
        for row, gen in enumerate(new):
            i, s = idx[row // cfg.num_samples], row % cfg.num_samples
            ends = [k for k, t in enumerate(gen.tolist()) if t in stops]
            n = ends[0] if ends else len(gen)
            n_tokens += n
            out.setdefault(i, []).append({
                "prompt_id": prompts[i]["prompt_id"], "sample_idx": s,
                "completion": _tidy(tok.decode(gen[:n], skip_special_tokens=True), continued[i]),
                "num_tokens": n, "finish_reason": "stop" if ends else "length",
            })
        bar.update(len(idx))
    bar.close()
    secs = time.time() - t0
    records = [r for i in range(len(prompts)) for r in out.get(i, [])]
    stats = {"tokens": n_tokens, "seconds": round(secs, 2), "tokens_per_s": round(n_tokens / max(secs, 1e-9), 1),
             "model_fingerprint": fingerprint(model), "truncated": sum(r["finish_reason"] == "length" for r in records)}
    return records, stats


def chat_prompt(tok, messages: list[dict]) -> str:
    """The model's input text for a chat: a new assistant turn, or — when the last message is the assistant's (a
    SEELE hint, stages/hints.py) — that message continued where it stops."""
    cont = messages[-1]["role"] == "assistant"
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=not cont, continue_final_message=cont)


def _tidy(text: str, continued: bool) -> str:
    """A new answer is stripped; a continuation keeps its leading space or newline (hint + continuation is then
    exactly the text the model produced after the problem)."""
    return text.rstrip() if continued else text.strip()


NUCLEUS_CANDIDATES = 1024  # top-p is looked for among the most likely tokens first (exact: see _top_p_sample)


@torch.inference_mode()
def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, cfg: GenerateConfig, stops: list[int],
           pad_id: int) -> torch.Tensor:
    """cfg.num_samples continuations of each (left-padded) prompt: [prompts x num_samples, <= max_new_tokens] token
    ids, rows of a prompt together, padded with pad_id after the first stop token. The prompts are encoded once
    and their KV cache repeated per sample; a finished sequence leaves the batch, so it costs no more compute;
    sampling draws from the top-p nucleus only (temperature 0: greedy)."""
    from transformers import DynamicCache

    n, rows = cfg.num_samples, input_ids.shape[0] * cfg.num_samples
    stop = torch.tensor(stops, device=input_ids.device)
    cache = DynamicCache()
    kv = {cache_keyword(model): cache}
    pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=True,
                   logits_to_keep=1, **kv).logits[:, -1].float()
    if n > 1:
        cache.batch_repeat_interleave(n)
        logits, attention_mask, pos = (x.repeat_interleave(n, 0) for x in (logits, attention_mask, pos))
    out = torch.full((rows, cfg.max_new_tokens), pad_id, dtype=torch.long, device=input_ids.device)
    alive = torch.arange(rows, device=input_ids.device)  # batch row -> output row
    for step in range(cfg.max_new_tokens):
        token = logits.argmax(-1) if cfg.temperature == 0 else _top_p_sample(logits / cfg.temperature, cfg.top_p)
        out[alive, step] = token
        done = torch.isin(token, stop)
        finished = int(done.sum())  # one wait for the device per step (all() and any() were two)
        if step == cfg.max_new_tokens - 1 or finished == len(alive):
            break
        if finished:  # finished sequences leave the batch
            keep = (~done).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, token, attention_mask, pos = alive[keep], token[keep], attention_mask[keep], pos[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(alive), 1)], dim=1)
        pos = pos[:, -1:] + 1
        logits = model(input_ids=token[:, None], attention_mask=attention_mask, position_ids=pos, use_cache=True,
                       **kv).logits[:, -1].float()
    return out


def _top_p_sample(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """One token per row from the top-p nucleus (the smallest set of most likely tokens whose probability reaches
    top_p; top-k off). The nucleus is found among the NUCLEUS_CANDIDATES most likely tokens and the sample drawn
    among them, instead of sorting and drawing over the whole vocabulary (which took a third of generation
    time); a row whose candidates do not reach top_p (a very flat distribution) falls back to all tokens, so
    the distribution sampled is exactly the nucleus."""
    probs = logits.softmax(-1)
    if top_p >= 1.0:
        return torch.multinomial(probs, 1).squeeze(-1)
    vals, idx = probs.topk(min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
    if bool((vals.sum(-1) < top_p).any()):
        vals, idx = probs.sort(dim=-1, descending=True)
    before = vals.cumsum(-1) - vals  # probability of the tokens ranked above each one
    vals = vals.masked_fill(before >= top_p, 0.0)  # the top token always stays (before = 0)
    choice = torch.multinomial(vals, 1)
    return idx.gather(-1, choice).squeeze(-1)


def in_prompt_order(prompts: list[dict], records: list[dict]) -> list[dict]:
    order = {p["prompt_id"]: i for i, p in enumerate(prompts)}
    return sorted(records, key=lambda r: (order[r["prompt_id"]], r["sample_idx"]))


def merge_shards(kwargs: dict, parts: list[tuple[list[dict], dict]]) -> tuple[list[dict], dict]:
    """The records of every process's shard in prompt order (then sample order), and their stats combined."""
    records = in_prompt_order(kwargs["prompts"], [r for recs, _ in parts for r in recs])
    stats = [s for _, s in parts]
    tokens, secs = sum(s["tokens"] for s in stats), max(s["seconds"] for s in stats)
    return records, {"tokens": tokens, "seconds": secs, "tokens_per_s": round(tokens / max(secs, 1e-9), 1),
                     "model_fingerprint": stats[0]["model_fingerprint"],
                     "truncated": sum(s["truncated"] for s in stats), "processes": len(parts)}


def python_model(spec: str):
    """The callable named by ``py:package.module:function``."""
    import importlib

    target = spec[3:]
    module, _, name = target.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"model {spec!r}: cannot import {name or '<function>'} from {module!r} "
                         f"(give py:package.module:function): {e}") from e
    return fn


def _generate_py(spec: str, prompts: list[dict], cfg: GenerateConfig, t0: float) -> tuple[list[dict], dict]:
    outs = python_model(spec)(prompts, cfg)
    if len(outs) != len(prompts) or any(len(o) != cfg.num_samples for o in outs):
        raise ValueError(f"model {spec!r} must return {cfg.num_samples} completion(s) for each of {len(prompts)} prompts")
    records = [{"prompt_id": p["prompt_id"], "sample_idx": s,
                "completion": _tidy(str(text), p["messages"][-1]["role"] == "assistant"),
                "num_tokens": len(str(text).split()), "finish_reason": "stop"}
               for p, o in zip(prompts, outs) for s, text in enumerate(o)]
    secs = time.time() - t0
    n = sum(r["num_tokens"] for r in records)
    return records, {"tokens": n, "seconds": round(secs, 2), "tokens_per_s": round(n / max(secs, 1e-9), 1),
                     "model_fingerprint": spec, "truncated": 0}
