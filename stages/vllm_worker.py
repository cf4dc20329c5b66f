"""The vLLM generation worker: ``python vllm_worker.py REQUEST.json RESPONSE.json``.

Runs in its own process — possibly another Python environment, since vLLM pins its own torch and transformers
(see the README's vLLM set-ups) — so it imports nothing from this project: only the standard library and vLLM.
It reads a request written by stages/vllm_client.py, generates, writes the response and exits, which gives
the GPU memory back before training starts.

Request: {"model", "tokenizer", "lora": adapter folder or null, "lora_rank", "engine": {LLM(...) arguments},
          "sampling": {"n", "temperature", "top_p", "max_tokens", "seed"},
          "prompts": [{"prompt_id", "index", "messages"}]}
Response: {"records": [{"prompt_id", "sample_idx", "completion", "num_tokens", "finish_reason"}],
           "stats": {"tokens", "seconds", "vllm_version"}}
Each prompt is sampled with seed + its index in the whole call, so the completions do not depend on how the
prompts were split across data-parallel workers. Greedy decoding is temperature 0.
"""

from __future__ import annotations

import json
import os
import sys
import time


def sampling_kwargs(sampling: dict, index: int) -> dict:
    """SamplingParams arguments for the prompt at `index` of the call (top_k off, as in the HF backend)."""
    greedy = sampling["temperature"] == 0
    return {"n": sampling["n"], "temperature": sampling["temperature"], "top_p": 1.0 if greedy else sampling["top_p"],
            "top_k": -1, "max_tokens": sampling["max_tokens"],
            "seed": sampling["seed"] + index, "skip_special_tokens": True}


def records_from_outputs(request: dict, outputs) -> list[dict]:
    """Response records from vLLM RequestOutputs (one per prompt, in request order; each has .outputs, a list of
    CompletionOutput with .text, .token_ids and .finish_reason)."""
    if len(outputs) != len(request["prompts"]):
        raise ValueError(f"vLLM returned {len(outputs)} outputs for {len(request['prompts'])} prompts")
    records = []
    for p, out in zip(request["prompts"], outputs):
        for s, c in enumerate(out.outputs):
            continued = p["messages"][-1]["role"] == "assistant"  # a hint continued: keep its leading whitespace
            records.append({"prompt_id": p["prompt_id"], "sample_idx": s,
                            "completion": c.text.rstrip() if continued else c.text.strip(),
                            "num_tokens": len(c.token_ids),
                            "finish_reason": "length" if c.finish_reason == "length" else "stop"})
    return records


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    request_path, response_path = argv
    with open(request_path) as f:
        request = json.load(f)
    try:
        import vllm
        from vllm import LLM, SamplingParams
    except ImportError as e:
        print(f"vLLM is not importable from {sys.executable} ({e}). Install it there, or point generate.vllm.python "
              "at the interpreter of an environment that has it (README: Scaling out).", file=sys.stderr)
        return 3
    t0 = time.time()
    lora = request.get("lora")
    llm = LLM(model=request["model"], tokenizer=request.get("tokenizer") or request["model"],
              enable_lora=bool(lora), max_lora_rank=request.get("lora_rank") or 16, **request.get("engine", {}))
    tok = llm.get_tokenizer()
    # an assistant message last (a SEELE hint) is continued, as stages/generate.py:chat_prompt does
    inputs = [{"prompt_token_ids": tok(tok.apply_chat_template(
        p["messages"], tokenize=False, add_generation_prompt=p["messages"][-1]["role"] != "assistant",
        continue_final_message=p["messages"][-1]["role"] == "assistant"), add_special_tokens=False).input_ids}
        for p in request["prompts"]]
    params = [SamplingParams(**sampling_kwargs(request["sampling"], p["index"])) for p in request["prompts"]]
    lora_request = None
    if lora:
        from vllm.lora.request import LoRARequest

        lora_request = LoRARequest("trained", 1, lora)
    outputs = llm.generate(inputs, params, lora_request=lora_request, use_tqdm=True)
    records = records_from_outputs(request, outputs)
    stats = {"tokens": sum(r["num_tokens"] for r in records), "seconds": round(time.time() - t0, 2),
             "vllm_version": vllm.__version__}
    tmp = response_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"records": records, "stats": stats}, f)
    os.replace(tmp, response_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
