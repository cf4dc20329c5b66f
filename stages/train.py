"""Train: one round of preference optimisation (or SFT) with TRL, from M(t) to M(t+1).

``trainer: dpo`` — TRL's DPOTrainer. IRPO's loss is DPO + alpha * NLL on the chosen sequence
(Pang et al. 2024, eq. 1): with ``alpha`` set, this stage asks TRL for ``loss_type=["sigmoid", "sft"]``
and ``loss_weights=[1, alpha]``; ``alpha: 0`` is plain DPO (``loss_type=["sigmoid"]``); ``alpha: null``
leaves ``loss_type``/``loss_weights`` to you. Deviation from the paper: TRL's "sft" term is the token-mean
NLL over the batch's chosen tokens, while the paper divides each sequence's NLL by its own length before
averaging; the two agree when chosen lengths are equal and differ by a length weighting otherwise.
``trainer: sft`` — TRL's SFTTrainer on prompt/completion records (the STaR / RFT baseline), loss on the
completion only.

Reference model: ``reference: previous`` uses M(t) (the model being trained starts from it: TRL loads a
frozen copy from the same path, or with LoRA disables the adapter); ``reference: initial`` keeps M0.
``lora`` (peft.LoraConfig keyword arguments) trains an adapter that is merged into the saved model, so
the next iteration always generates from a plain checkpoint (the adapter is kept in ``model/adapter`` for
vLLM to serve directly); ``lora: null`` is full fine-tuning. ``quantize: 4bit`` is QLoRA: the frozen base is
loaded in 4-bit NF4 by bitsandbytes (bf16 compute where the hardware has it) and the adapter trained on top;
the saved model is the adapter merged into the unquantized base, which is what vLLM/HF then generate from (it
differs slightly from the 4-bit model the adapter was trained against).
Every other key of ``args`` is a TRL DPOConfig/SFTConfig field, passed through unchanged. On a machine
without CUDA the stage sets ``use_cpu=True``, and ``bf16`` (autocast; the weights and optimizer stay fp32)
only where the CPU does bf16 natively (AVX512-BF16/AMX), unless you set them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stages import is_integer, is_number

PROJECT_KEYS = ("trainer", "alpha", "reference", "lora", "quantize", "dtype")
# ranges of the TRL fields whose meaning is known: a value outside is refused before any model loads
# (train.beta=-1 would otherwise train an inverted DPO to the end)
TRL_RANGES = {
    "beta": (lambda v: v > 0, "> 0"),
    "learning_rate": (lambda v: v > 0, "> 0"),
    "num_train_epochs": (lambda v: v > 0, "> 0"),
    "max_steps": (lambda v: v == -1 or v > 0, "> 0 or -1 (off)"),
    "per_device_train_batch_size": (lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "gradient_accumulation_steps": (lambda v: v >= 1 and v == int(v), "an integer >= 1"),
    "max_length": (lambda v: v >= 1, ">= 1"),
    "max_prompt_length": (lambda v: v >= 1, ">= 1"),
    "logging_steps": (lambda v: v > 0, "> 0"),
    "warmup_steps": (lambda v: v >= 0, ">= 0"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "max_grad_norm": (lambda v: v >= 0, ">= 0"),
    "label_smoothing": (lambda v: 0 <= v < 0.5, "in [0, 0.5)"),
    "adam_beta1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "adam_epsilon": (lambda v: v > 0, "> 0"),
}


class TrainDataError(ValueError):
    """This iteration's examples cannot train under the config: one line naming the option. Everything before the
    training stage is kept, so rerunning with the option changed resumes there."""


@dataclass
class TrainConfig:
    trainer: str = "dpo"  # dpo | sft
    alpha: float | None = 1.0  # NLL weight on chosen (IRPO: 1); 0 = plain DPO; null = use args.loss_type
    reference: str = "previous"  # previous: M(t) | initial: M0 (DPO only)
    lora: dict | None = None  # peft.LoraConfig kwargs (r, lora_alpha, target_modules...); null = full FT
    quantize: str | None = None  # null | 4bit: QLoRA, the frozen base in 4-bit NF4 (bitsandbytes), needs lora
    dtype: str = "float32"  # dtype the trained weights are loaded in (float32 | bfloat16)
    args: dict = field(default_factory=dict)  # TRL DPOConfig / SFTConfig fields, passed through

    def __post_init__(self) -> None:
        if self.trainer not in ("dpo", "sft"):
            raise ValueError(f"train.trainer must be 'dpo' or 'sft', got {self.trainer!r}")
        if self.reference not in ("previous", "initial"):
            raise ValueError(f"train.reference must be 'previous' or 'initial', got {self.reference!r}")
        if self.alpha is not None and self.alpha < 0:
            raise ValueError(f"train.alpha must be >= 0 (or null), got {self.alpha}")
        if self.alpha is not None and "loss_type" in self.args and self.trainer == "dpo":
            raise ValueError("set either train.alpha (IRPO's NLL weight) or train.loss_type, not both "
                             "(train.alpha=null hands loss_type/loss_weights to TRL unchanged)")
        if self.quantize not in (None, "4bit"):
            raise ValueError(f"train.quantize must be null or '4bit', got {self.quantize!r}")
        if self.quantize and not self.lora:
            raise ValueError("train.quantize=4bit (QLoRA) trains a LoRA adapter on the 4-bit base: set train.lora too, "
                             "e.g. train.lora='{r: 16, lora_alpha: 32, target_modules: all-linear}'")
        if self.lora is not None:
            self._check_lora()
        if self.quantize:
            import importlib.util

            if importlib.util.find_spec("bitsandbytes") is None:
                raise ValueError("train.quantize=4bit needs bitsandbytes: pip install -e '.[qlora]'")
        valid = {f.name for f in dataclasses.fields(self.trl_config_class())}
        unknown = sorted(set(self.args) - valid)
        if unknown:  # TRL's config has ~150 fields: name the close one, not all of them
            import difflib

            names = sorted(valid | {f.name for f in dataclasses.fields(self)} - {"args"})
            close = [f"{u}: did you mean train.{c[0]}?" for u in unknown if (c := difflib.get_close_matches(u, names, 1))]
            raise ValueError(f"unknown TRL {self.trl_config_class().__name__} field(s) {unknown}"
                             + (f" ({'; '.join(close)})" if close else ""))
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"train.dtype must be float32 or bfloat16, got {self.dtype!r}")
        for k, (ok, rule) in TRL_RANGES.items():
            v = self.args.get(k)
            if v is not None and not (is_number(v) and ok(v)):
                raise ValueError(f"train.{k} must be {rule}, got {v!r}")

    def _check_lora(self) -> None:
        """peft refuses some LoRA settings (an unknown field, r = 0) only when it wraps the model, which is after
        the iteration's sampling and judging: build its config here."""
        if not isinstance(self.lora, dict):
            raise ValueError(f"train.lora must be a mapping of peft.LoraConfig fields, e.g. "
                             f"'{{r: 16, lora_alpha: 32, target_modules: all-linear}}', got {self.lora!r}")
        r = self.lora.get("r", 8)
        if not (is_integer(r) and r >= 1):
            raise ValueError(f"train.lora: r must be an integer >= 1, got {r!r}")
        from peft import LoraConfig

        try:
            LoraConfig(**{"task_type": "CAUSAL_LM", **self.lora})
        except (TypeError, ValueError) as e:
            raise ValueError(f"train.lora: {e}") from None

    def trl_config_class(self):
        from trl import DPOConfig, SFTConfig

        return DPOConfig if self.trainer == "dpo" else SFTConfig


def _trl_args(cfg: TrainConfig, work_dir: Path):
    args = dict(cfg.args)
    if cfg.trainer == "dpo" and cfg.alpha is not None:
        args["loss_type"] = ["sigmoid", "sft"] if cfg.alpha > 0 else ["sigmoid"]
        args["loss_weights"] = [1.0, float(cfg.alpha)] if cfg.alpha > 0 else [1.0]
    if not torch.cuda.is_available():
        from stages.modeling import cpu_has_bf16

        args.setdefault("use_cpu", True)
        args.setdefault("bf16", cpu_has_bf16())  # bf16 autocast, fp32 master weights: ~1.6x on AVX512-BF16
    args.setdefault("ddp_find_unused_parameters", False)  # under torchrun/accelerate: every parameter is used
    args.setdefault("report_to", "none")
    args.setdefault("save_strategy", "no")
    args.setdefault("logging_steps", 1)
    args.setdefault("disable_tqdm", False)  # False: no PrinterCallback; the stage draws its own bar
    return cfg.trl_config_class()(output_dir=str(work_dir), **args)


def _one_dataset_file(data, folder: Path, args):
    """The training records as one dataset file that every process reads (several processes only). TRL 1.16's
    precompute_ref_log_probs has rank 0 write the reference log-probs to a cache file beside the dataset's file, and
    every rank then reads it; a dataset held in memory (``Dataset.from_list``) has no file, so the cache goes into
    datasets' temporary folder, which each process makes for itself, and the other ranks fail to open it
    (FileNotFoundError). Rank 0 saves the records first (after a killed attempt, over what it left), then all load."""
    from datasets import load_from_disk

    with args.main_process_first(desc="training data", local=False):
        if args.process_index == 0:
            shutil.rmtree(folder, ignore_errors=True)
            data.save_to_disk(str(folder))
        return load_from_disk(str(folder))


# vocabulary tile width of TRL's fused LM head on CPU (see _cpu_lm_head)
CPU_VOCAB_TILE = 4096


@contextmanager
def _cpu_lm_head():
    """Make TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``, which DPO and SFT use to score
    log-probabilities without full logits) cheap on CPU, for everything trained inside the block.

    TRL 1.16 tunes the head for Triton GPUs. Elsewhere it projects *every* position, prompt and padding included
    (compacting would recompile Neuron graphs on every batch), through 32768-wide vocabulary tiles whose torch
    fallback makes several full-tile fp32 temporaries: full-vocabulary work on tokens whose labels are ignored, and
    0.45 GB more peak memory at 2 pairs per micro-batch (benchmarks/bench_train.py). On CPU, where eager torch has no
    recompilation to avoid, this scores only the labelled positions and narrows the tiles to ``CPU_VOCAB_TILE``.
    The log-probabilities are the same up to float summation order (tested against TRL's own head). TRL's module
    names are private, so a TRL without them is left alone (tests/test_train.py notices at the pinned version).
    """
    import trl.trainer.utils as head

    if torch.cuda.is_available() or not all(hasattr(head, n) for n in ("_use_triton", "_CHUNKED_LOGPROB_CHUNK_SIZE")):
        yield
        return
    saved = head._use_triton, head._CHUNKED_LOGPROB_CHUNK_SIZE
    head._use_triton = lambda device: device.type == "cpu" or saved[0](device)  # the head reads it as "compact"
    head._CHUNKED_LOGPROB_CHUNK_SIZE = CPU_VOCAB_TILE
    try:
        yield
    finally:
        head._use_triton, head._CHUNKED_LOGPROB_CHUNK_SIZE = saved


def _release_memory_callback():
    """Return the heap's free pages at the start of every step and before every optimizer update (stages/modeling.py
    ``release_memory``): the last micro-batch's activations are garbage by then, and without it the optimizer
    states and the next micro-batch stack on them (the default job's peak 4.88 -> 4.58 GB, 351 -> 365 s in one run
    each, the same numbers: benchmarks/bench_memory.py)."""
    from transformers import TrainerCallback

    from stages.modeling import release_memory

    class ReleaseMemory(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            release_memory(collect=False)

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            release_memory(collect=False)

    return ReleaseMemory()


def _progress_callback(desc: str):
    """One tqdm bar per training run with the latest loss / reward margin / chosen log-prob as its postfix
    (instead of transformers printing a dict per logging step)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, desc=desc, unit="step", dynamic_ncols=True,
                            disable=not state.is_world_process_zero)  # one bar however many processes train

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            short = {"loss": "loss", "rewards/margins": "margin", "logps/chosen": "logp_chosen"}
            post = {v: f"{logs[k]:.3g}" for k, v in short.items() if k in (logs or {})}
            if post and self.bar is not None:
                self.bar.set_postfix(post, refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return Progress()


def _load(path: str, dtype: str, quantize: str | None = None):
    from transformers import AutoModelForCausalLM

    from stages.modeling import pick_dtype

    if quantize != "4bit":
        return AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, "cpu"))
    from transformers import BitsAndBytesConfig

    from stages.modeling import pick_device

    device = pick_device("auto")  # this process's GPU under torchrun/accelerate, else the CPU
    compute = pick_dtype("auto", device)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                             bnb_4bit_compute_dtype=compute)
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=bnb, dtype=compute, device_map={"": device})


def _is_main() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _long_prompts(records: list[dict], tok, args) -> int:
    """How many pairs TRL's DPOTrainer leaves out because the prompt alone fills max_length (keep_start
    truncation), counted with TRL's tokenization of the prompt: TRL drops them silently, and when it drops every
    pair it dies in a bare torch.cat, so that case is a TrainDataError naming the option."""
    if args.max_length is None or args.truncation_mode != "keep_start":
        return 0
    lengths = [len(tok.apply_chat_template(r["prompt"], tokenize=True, return_dict=True, add_generation_prompt=True)
                   ["input_ids"]) if isinstance(r["prompt"], list) else len(tok(r["prompt"])["input_ids"])
               for r in records]
    long = sum(n >= args.max_length for n in lengths)
    if long == len(records):
        raise TrainDataError(f"train.max_length={args.max_length}: the prompt of each of the {long} pairs fills it "
                             f"(the shortest has {min(lengths)} tokens), and TRL's DPOTrainer leaves such pairs out: "
                             "raise train.max_length")
    return long


def train(model_path: str, records: list[dict], output_dir: str | Path, cfg: TrainConfig,
          initial_model_path: str | None = None, callbacks: list | None = None, desc: str = "train") -> dict:
    """Train on `records` (DPO: prompt/chosen/rejected; SFT: prompt/completion, TRL's conversational
    format; extra provenance columns are dropped) starting from `model_path`, save the resulting plain
    checkpoint (model + tokenizer, and with LoRA the adapter in ``adapter/``) and TRL's log history
    (``trainer_log.json``) to `output_dir`, and return the training metrics. With no records the model is
    saved unchanged (metrics say ``skipped``): an iteration without training data is not an error. Under
    torchrun/accelerate every rank calls this; the data is split between them and rank 0 writes."""
    from datasets import Dataset
    from peft import LoraConfig

    from stages.modeling import load_tokenizer

    t0 = time.time()
    output_dir = Path(output_dir)
    if not records:  # every question was skipped (all correct, or nothing correct for STaR): M(t+1) = M(t)
        if _is_main():
            _load(model_path, cfg.dtype).save_pretrained(output_dir)
            load_tokenizer(model_path).save_pretrained(output_dir)
        return {"examples": 0, "steps": 0, "seconds": round(time.time() - t0, 2), "skipped": True}
    work_dir = output_dir.with_name(output_dir.name + ".trainer")
    columns = ["prompt", "chosen", "rejected"] if cfg.trainer == "dpo" else ["prompt", "completion"]
    data = Dataset.from_list([{k: r[k] for k in columns} for r in records])
    tok = load_tokenizer(model_path, padding_side="right")
    args = _trl_args(cfg, work_dir)
    dropped = _long_prompts(records, tok, args) if cfg.trainer == "dpo" else 0
    if dropped and _is_main():
        print(f"{desc}: {dropped} of {len(records)} pairs left out, their prompt fills train.max_length="
              f"{args.max_length}", flush=True)
    if args.world_size > 1:
        data = _one_dataset_file(data, work_dir / "data", args)
    peft_config = LoraConfig(**{"task_type": "CAUSAL_LM", **cfg.lora}) if cfg.lora else None
    model = _load(model_path, cfg.dtype, cfg.quantize)
    with _cpu_lm_head():  # TRL builds its LM head and scores the reference log-probs in the constructor
        if cfg.trainer == "dpo":
            from trl import DPOTrainer

            ref = None
            if cfg.reference == "initial" and initial_model_path and initial_model_path != model_path:
                ref = _load(initial_model_path, cfg.dtype)
            trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=data, processing_class=tok,
                                 peft_config=peft_config, callbacks=callbacks)
        else:
            from trl import SFTTrainer

            trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                                 peft_config=peft_config, callbacks=callbacks)
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_progress_callback(f"{desc} ({cfg.trainer}, {len(records)} examples)"))
        trainer.add_callback(_release_memory_callback())
        result = trainer.train()
    # every rank takes part in saving (FSDP / ZeRO-3 gather the weights); rank 0 writes
    trainer.save_model(str(output_dir / "adapter" if peft_config else output_dir))
    if trainer.accelerator.is_main_process:
        if peft_config is not None:  # the adapter merged into a plain checkpoint (for QLoRA: into the unquantized base)
            from peft import PeftModel

            PeftModel.from_pretrained(_load(model_path, cfg.dtype), output_dir / "adapter").merge_and_unload() \
                .save_pretrained(output_dir)
        for extra in (output_dir / "training_args.bin", output_dir / "adapter" / "training_args.bin"):
            extra.unlink(missing_ok=True)
        tok.padding_side = "left"
        tok.save_pretrained(output_dir)
        (output_dir / "trainer_log.json").write_text(json.dumps(trainer.state.log_history))
        shutil.rmtree(work_dir, ignore_errors=True)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {"train_loss": float(result.training_loss), "steps": int(trainer.state.global_step),
               "examples": len(records), "seconds": round(time.time() - t0, 2)}
    if trainer.accelerator.num_processes > 1:
        metrics["processes"] = trainer.accelerator.num_processes
    if dropped:
        metrics["dropped_long_prompt"] = dropped
    for key in ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected",
                "logps/chosen", "logps/rejected"):
        vals = [h[key] for h in logs if key in h and math.isfinite(h[key])]
        if vals:
            metrics[f"{key}_first"], metrics[f"{key}_last"] = float(vals[0]), float(vals[-1])
            metrics[f"{key}_mean"] = float(sum(vals) / len(vals))
    del trainer, model
    return metrics
