"""How much the held-out numbers move with the evaluation batch and dtype: the same model, the same greedy evaluation.

    python benchmarks/bench_eval_batch.py                                   # M0: the embedded SmolLM2-135M
    python benchmarks/bench_eval_batch.py --model outputs/<run>/iter_04/model   # a trained model
    python benchmarks/bench_eval_batch.py --dtypes float32 --batches 32,64

Greedy decoding is deterministic for a given setting, but in bf16 which prompts share a forward pass (how much left
padding, which kernel blocking) changes the rounding, and a near-tie between two tokens can go either way. Each row
is the evaluation stage itself (``stages.evaluate.evaluate``: the default job's 200 held-out arithmetic questions,
<= 128 new tokens, the task's checker) at one ``eval.batch_size`` and dtype; "answers differ" counts the held-out
answers that are not the same text as in the first row of that dtype. Compare single runs only where these match.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import common  # noqa: F401  (path and environment)
from common import (MODELS, arithmetic_prompts, arithmetic_task, count, counts, header, model_path, names,
                    table)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded", help="embedded, tiny, or a checkpoint folder (a run's iter_NN/model)")
    ap.add_argument("--prompts", type=count, default=200)
    ap.add_argument("--batches", type=counts, default="32,16,64,200",
                    help="eval.batch_size values; the first is the reference")
    ap.add_argument("--dtypes", type=names("auto", "float32", "bfloat16"), default="auto",
                    help="auto (bf16 where native), float32, bfloat16; comma-separated")
    a = ap.parse_args()
    if a.model not in MODELS and not (Path(a.model) / "config.json").is_file():
        ap.error(f"argument --model: {a.model!r} is not {' or '.join(MODELS)} nor a checkpoint folder (config.json)")
    from stages.evaluate import EvalConfig, evaluate
    from stages.generate import Engine
    from stages.modeling import pick_dtype
    from stages.verify import VerifyConfig

    header("held-out accuracy vs evaluation batch and dtype (greedy)",
           f"python benchmarks/bench_eval_batch.py --model {a.model} --prompts {a.prompts} "
           f"--batches {','.join(map(str, a.batches))} --dtypes {','.join(a.dtypes)}",
           f"{a.prompts} held-out arithmetic questions, greedy, <= 128 new tokens")
    path = model_path(a.model) if a.model in MODELS else a.model
    prompts = [{k: v for k, v in p.items() if k != "problem"} for p in arithmetic_prompts(a.prompts, split="test")]
    check = VerifyConfig(task=arithmetic_task()[0])
    rows = []
    for dtype in a.dtypes:
        reference = None
        for batch in a.batches:
            cfg = EvalConfig(max_new_tokens=128, batch_size=batch, engine=Engine(dtype=dtype, device="cpu"))
            t0 = time.perf_counter()
            records, metrics = evaluate(path, prompts, cfg, check, desc=f"{dtype} batch {batch}")
            answers = [r["completion"] for r in records]
            reference = reference or answers
            rows.append({"dtype": str(pick_dtype(dtype, "cpu")).removeprefix("torch."), "eval.batch_size": batch,
                         "accuracy %": f"{100 * metrics['accuracy']:.1f}",
                         "lenient %": f"{100 * metrics['accuracy_lenient']:.1f}",
                         "answers differ": sum(x != y for x, y in zip(reference, answers)),
                         "seconds (with loading)": f"{time.perf_counter() - t0:.1f}"})
            print(table(rows[-1:], list(rows[-1])).splitlines()[-1], flush=True)
    print(f"\n## {path}\n" + table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
