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
the next iteration always generates from a plain checkpoint; ``lora: null`` is full fine-tuning.
Every other key of ``args`` is a TRL DPOConfig/SFTConfig field, passed through unchanged. On a machine
without CUDA the stage sets ``use_cpu=True``, and ``bf16`` (autocast; the weights and optimizer stay fp32)
only where the CPU does bf16 natively (AVX512-BF16/AMX), unless you set them.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

PROJECT_KEYS = ("trainer", "alpha", "reference", "lora", "dtype")


@dataclass
class TrainConfig:
    trainer: str = "dpo"  # dpo | sft
    alpha: float | None = 1.0  # NLL weight on chosen (IRPO: 1); 0 = plain DPO; null = use args.loss_type
    reference: str = "previous"  # previous: M(t) | initial: M0 (DPO only)
    lora: dict | None = None  # peft.LoraConfig kwargs (r, lora_alpha, target_modules...); null = full FT
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
        valid = {f.name for f in dataclasses.fields(self.trl_config_class())}
        unknown = sorted(set(self.args) - valid)
        if unknown:
            raise ValueError(f"train: unknown TRL {self.trl_config_class().__name__} field(s) {unknown}")
        for k in ("num_train_epochs", "learning_rate", "per_device_train_batch_size"):
            if k in self.args and not (self.args[k] and self.args[k] > 0):
                raise ValueError(f"train.{k} must be > 0, got {self.args[k]}")

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
    args.setdefault("report_to", "none")
    args.setdefault("save_strategy", "no")
    args.setdefault("logging_steps", 1)
    args.setdefault("disable_tqdm", False)  # False: no PrinterCallback; the stage draws its own bar
    return cfg.trl_config_class()(output_dir=str(work_dir), **args)


def _progress_callback(desc: str):
    """One tqdm bar per training run with the latest loss / reward margin / chosen log-prob as its postfix
    (instead of transformers printing a dict per logging step)."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, desc=desc, unit="step", dynamic_ncols=True)

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


def _load(path: str, dtype: str):
    from transformers import AutoModelForCausalLM

    from stages.modeling import pick_dtype

    return AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, "cpu"))


def train(model_path: str, records: list[dict], output_dir: str | Path, cfg: TrainConfig,
          initial_model_path: str | None = None, callbacks: list | None = None, desc: str = "train") -> dict:
    """Train on `records` (DPO: prompt/chosen/rejected; SFT: prompt/completion, TRL's conversational
    format; extra provenance columns are dropped) starting from `model_path`, save the resulting plain
    checkpoint (model + tokenizer) to `output_dir`, and return the training metrics. With no records the
    model is saved unchanged (metrics say ``skipped``): an iteration without training data is not an error."""
    from datasets import Dataset
    from peft import LoraConfig

    from stages.modeling import load_tokenizer

    t0 = time.time()
    output_dir = Path(output_dir)
    if not records:  # every question was skipped (all correct, or nothing correct for STaR): M(t+1) = M(t)
        _load(model_path, cfg.dtype).save_pretrained(output_dir)
        load_tokenizer(model_path).save_pretrained(output_dir)
        return {"examples": 0, "steps": 0, "seconds": round(time.time() - t0, 2), "skipped": True}
    work_dir = output_dir.with_name(output_dir.name + ".trainer")
    columns = ["prompt", "chosen", "rejected"] if cfg.trainer == "dpo" else ["prompt", "completion"]
    data = Dataset.from_list([{k: r[k] for k in columns} for r in records])
    tok = load_tokenizer(model_path, padding_side="right")
    args = _trl_args(cfg, work_dir)
    peft_config = LoraConfig(**{"task_type": "CAUSAL_LM", **cfg.lora}) if cfg.lora else None
    model = _load(model_path, cfg.dtype)
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
    result = trainer.train()
    trained = trainer.model
    if peft_config is not None:
        trained = trained.merge_and_unload()
    trained.save_pretrained(output_dir)
    tok.padding_side = "left"
    tok.save_pretrained(output_dir)
    shutil.rmtree(work_dir, ignore_errors=True)
    logs = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {"train_loss": float(result.training_loss), "steps": int(trainer.state.global_step),
               "examples": len(records), "seconds": round(time.time() - t0, 2)}
    for key in ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected",
                "logps/chosen", "logps/rejected"):
        vals = [h[key] for h in logs if key in h and math.isfinite(h[key])]
        if vals:
            metrics[f"{key}_first"], metrics[f"{key}_last"] = float(vals[0]), float(vals[-1])
            metrics[f"{key}_mean"] = float(sum(vals) / len(vals))
    del trainer, model, trained
    return metrics
