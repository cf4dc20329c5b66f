"""A stand-in `vllm` package for the engine test (tests/test_engine.py): not vLLM, only its calling surface
(LLM, SamplingParams, RequestOutput-like results), put on the vLLM worker's path (PYTHONPATH) in place of the real
package. It records every prompt it is asked into the JSON-lines file named by $FAKE_VLLM_LOG and answers each
with text that every parser of the pipeline reads (an instruction line, a score line, a verdict line), varied per
prompt and sample so that self-instruct's near-duplicate filter keeps them."""

from __future__ import annotations

import json
import os
import random
from types import SimpleNamespace

__version__ = "0.0+stand-in"
WORDS = ("river garden lantern copper violin harbor meadow pepper canyon ribbon marble thunder velvet orchard "
         "compass falcon glacier harvest island jasmine kettle lemon mosaic nectar oyster puzzle quartz saddle "
         "tulip umbrella walnut yogurt zephyr anchor bakery cactus dolphin ember fossil ginger").split()


class SamplingParams:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class LLM:
    def __init__(self, model: str, tokenizer: str | None = None, **engine):
        from transformers import AutoTokenizer

        self.model, self.engine = model, engine
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or model)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, inputs: list[dict], params: list[SamplingParams], lora_request=None, use_tqdm: bool = True):
        outputs = []
        with open(os.environ["FAKE_VLLM_LOG"], "a") as log:
            for inp, p in zip(inputs, params):
                text = self.tokenizer.decode(inp["prompt_token_ids"])
                log.write(json.dumps({"prompt": text, "n": p.n, "temperature": p.temperature,
                                      "max_tokens": p.max_tokens, "model": self.model}) + "\n")
                rng = random.Random(f"{text}:{p.seed}")
                outs = []
                for k in range(p.n):
                    words = " ".join(rng.sample(WORDS, 7))
                    reply = (f"Describe the {words}.\nAnswer: {rng.randint(1, 20)}\nScore: {rng.randint(1, 5)}\n"
                             f"Winner: {rng.choice('AB')}")
                    outs.append(SimpleNamespace(text=reply, token_ids=[0] * len(reply.split()), finish_reason="stop"))
                outputs.append(SimpleNamespace(outputs=outs))
        return outputs
