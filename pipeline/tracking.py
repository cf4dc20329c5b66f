"""Tracking: one W&B run per pipeline run (offline by default), or nothing (`logger=none`).

Iteration-level metrics go on an ``iteration`` axis under their stage's name (``generate/*``, ``judge/*``,
``pairs/*``, ``train/*``, ``eval/*``..., the keys of metrics.json: pipeline/report.py); the per-step training
curves of every iteration go on one continuing ``trainer/step`` axis (``trainer/*``) so iterations follow each
other instead of overlapping (TRL's own W&B callback restarts its step every iteration; it is not used). The run id is derived from
the run folder, so a resumed run logs into the same W&B run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline.graph import GROUPS
from stages import is_number


class NoTracker:
    """logger=none: the same calls, doing nothing."""

    def log_iteration(self, t: int, metrics: dict) -> None: ...

    def log_pairs(self, t: int, records: list[dict]) -> None: ...

    def train_callback(self, t: int, step_offset: int):
        return None

    def log_train_history(self, t: int, step_offset: int, model_dir: str) -> None: ...

    def finish(self) -> None: ...


class WandbTracker(NoTracker):
    def __init__(self, cfg: DictConfig, run_dir: Path, job_name: str | None):
        import wandb

        self.wandb = wandb
        self.log_pairs_n = int(cfg.logger.log_pairs)
        run_id = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
        try:
            self.run = wandb.init(
                project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.logger.group,
                name=job_name or cfg.run_name, id=run_id, resume="allow", dir=str(run_dir), mode=cfg.logger.mode,
                tags=list(cfg.logger.tags), config=OmegaConf.to_container(cfg, resolve=True),  # type: ignore[arg-type]
            )
        except wandb.errors.Error as e:  # online: no API key, a wrong one, no network
            from pipeline.config import ConfigError

            raise ConfigError(f"logger.mode={cfg.logger.mode}: W&B could not start the run ({type(e).__name__}: {e}): "
                              "wandb login (or set WANDB_API_KEY), or logger.mode=offline to keep it in the run "
                              "folder and `wandb sync` it later") from None
        wandb.define_metric("iteration")
        wandb.define_metric("trainer/step")
        wandb.define_metric("trainer/*", step_metric="trainer/step")
        for group in GROUPS:
            wandb.define_metric(f"{group}/*", step_metric="iteration")
        wandb.define_metric("seconds", step_metric="iteration")

    def log_iteration(self, t: int, metrics: dict) -> None:
        flat = {k: v for k, v in metrics.items() if is_number(v)}
        self.run.log({**flat, "iteration": t})

    def log_pairs(self, t: int, records: list[dict]) -> None:
        if not records or not self.log_pairs_n:
            return
        cols = ["iteration", "prompt_id", "pair_type", "prompt", "chosen", "rejected"]
        table = self.wandb.Table(columns=cols)
        judge = [r for r in records if r.get("pair_type") == "judge"]  # Meta-Rewarding: show both kinds
        shown = judge[: self.log_pairs_n // 2] if judge else []
        shown = [r for r in records if r.get("pair_type") != "judge"][: self.log_pairs_n - len(shown)] + shown
        for r in shown:
            side = lambda k: r[k][-1]["content"] if r.get(k) else ""  # noqa: E731
            table.add_data(t, r["prompt_id"], r.get("pair_type") or "actor", r["prompt"][-1]["content"],
                           side("chosen") or side("completion"), side("rejected"))
        self.run.log({"iteration": t, f"pairs/sample_{t:02d}": table})

    def train_callback(self, t: int, step_offset: int):
        from transformers import TrainerCallback

        run = self.run

        class ToWandb(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                vals = {f"trainer/{k}": v for k, v in (logs or {}).items() if isinstance(v, (int, float))}
                run.log({"trainer/step": step_offset + state.global_step, "trainer/iteration": t, **vals})

        return ToWandb()

    def log_train_history(self, t: int, step_offset: int, model_dir: str) -> None:
        """The training curves of a model trained in worker processes, from its trainer_log.json."""
        path = Path(model_dir) / "trainer_log.json"
        for logs in json.loads(path.read_text()) if path.is_file() else []:
            vals = {f"trainer/{k}": v for k, v in logs.items() if isinstance(v, (int, float)) and k != "step"}
            self.run.log({"trainer/step": step_offset + int(logs.get("step", 0)), "trainer/iteration": t, **vals})

    def finish(self) -> None:
        self.run.finish()


def make_tracker(cfg: DictConfig, run_dir: Path, job_name: str | None = None) -> NoTracker:
    return WandbTracker(cfg, run_dir, job_name) if cfg.logger.kind == "wandb" else NoTracker()
