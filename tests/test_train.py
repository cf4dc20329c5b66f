"""The train stage with real TRL on the tiny model: parameters change, the loss is finite, LoRA merges."""

from __future__ import annotations

import math
import re

import pytest
import torch

from stages.train import TrainConfig, train

PROMPT = [{"role": "user", "content": "What is 2 + 3? End with 'Answer: <number>'."}]


def _pairs(n: int = 4) -> list[dict]:
    return [{"prompt_id": f"p{i}", "prompt": PROMPT,
             "chosen": [{"role": "assistant", "content": f"Step 1: 2 + 3 = 5\nAnswer: 5 ({i})"}],
             "rejected": [{"role": "assistant", "content": f"I think it is {i + 7}."}]} for i in range(n)]


ARGS = {"learning_rate": 1e-3, "per_device_train_batch_size": 2, "num_train_epochs": 1, "max_length": 128,
        "gradient_checkpointing": False, "beta": 0.1, "seed": 0}


def _weights(path) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


def _changed(before: dict, after: dict) -> int:
    return sum(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_dpo_full_finetune_changes_parameters(tiny_model, tmp_path, alpha):
    out = tmp_path / "m1"
    metrics = train(tiny_model, _pairs(), out, TrainConfig(alpha=alpha, args=dict(ARGS)))
    assert math.isfinite(metrics["train_loss"]) and metrics["steps"] == 2
    assert "rewards/margins_last" in metrics and "logps/chosen_last" in metrics
    before, after = _weights(tiny_model), _weights(out)
    assert _changed(before, after) > len(before) // 2
    assert (out / "tokenizer.json").is_file()


def test_nll_term_raises_the_loss_above_plain_dpo(tiny_model, tmp_path):
    """alpha=1 adds the chosen NLL (about ln|V| ~ 10.8 for a random model) on top of the DPO loss (~0.69)."""
    irpo = train(tiny_model, _pairs(), tmp_path / "a", TrainConfig(alpha=1.0, args=dict(ARGS)))
    dpo = train(tiny_model, _pairs(), tmp_path / "b", TrainConfig(alpha=0.0, args=dict(ARGS)))
    assert dpo["loss_first"] == pytest.approx(math.log(2), abs=0.01)  # DPO starts at ln 2 (policy == reference)
    assert irpo["loss_first"] > dpo["loss_first"] + 5


def test_lora_adapter_is_merged_into_a_plain_checkpoint(tiny_model, tmp_path):
    out = tmp_path / "lora"
    cfg = TrainConfig(alpha=1.0, lora={"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                      args=dict(ARGS))
    metrics = train(tiny_model, _pairs(), out, cfg)
    assert math.isfinite(metrics["train_loss"])
    assert not (out / "adapter_config.json").exists()
    before, after = _weights(tiny_model), _weights(out)
    assert set(before) == set(after)  # merged: the same parameter names as the base model
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)


def test_reference_initial_uses_m0(tiny_model, tmp_path):
    m1 = tmp_path / "m1"
    train(tiny_model, _pairs(), m1, TrainConfig(alpha=0.0, args=dict(ARGS)))
    prev = train(str(m1), _pairs(), tmp_path / "prev", TrainConfig(alpha=0.0, args=dict(ARGS)))
    init = train(str(m1), _pairs(), tmp_path / "init", TrainConfig(alpha=0.0, reference="initial", args=dict(ARGS)),
                 initial_model_path=tiny_model)
    # against M(t) the first step's margin is 0 (policy == reference); against M0 it is not
    assert prev["rewards/margins_first"] == pytest.approx(0.0, abs=1e-4)
    assert abs(init["rewards/margins_first"]) > 1e-3


def test_sft_trains_on_completions(tiny_model, tmp_path):
    out = tmp_path / "sft"
    recs = [{"prompt": PROMPT, "completion": [{"role": "assistant", "content": "Step 1: 2 + 3 = 5\nAnswer: 5"}]}] * 4
    args = {k: v for k, v in ARGS.items() if k != "beta"}
    metrics = train(tiny_model, recs, out, TrainConfig(trainer="sft", alpha=None, args=args))
    assert math.isfinite(metrics["train_loss"])
    assert _changed(_weights(tiny_model), _weights(out)) > 0


def test_train_config_refuses_bad_values():
    with pytest.raises(ValueError, match=re.escape("unknown TRL DPOConfig field(s) ['betta', 'xyzzy'] (betta: did you "
                                                   "mean train.beta?)")):  # among ~150 TRL fields: the close one
        TrainConfig(args={"betta": 0.1, "xyzzy": 1})
    with pytest.raises(ValueError, match=re.escape("(qantize: did you mean train.quantize?)")):  # the stage's own
        TrainConfig(args={"qantize": "4bit"})
    with pytest.raises(ValueError, match="alpha"):
        TrainConfig(alpha=-1)
    with pytest.raises(ValueError, match="either train.alpha"):
        TrainConfig(alpha=1.0, args={"loss_type": ["ipo"]})
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(args={"learning_rate": 0})
    # LoRA settings peft would refuse only when it wraps the model, after sampling and judging
    with pytest.raises(ValueError, match=r"^train.lora: r must be an integer >= 1, got 0"):
        TrainConfig(lora={"r": 0})
    with pytest.raises(ValueError, match=r"^train.lora: .*rank"):
        TrainConfig(lora={"r": 8, "rank": 4})
    TrainConfig(lora={"r": 8, "lora_alpha": 16, "target_modules": "all-linear"})


def test_pairs_whose_prompt_fills_max_length_are_counted_and_all_of_them_is_an_error(tiny_model, tmp_path):
    """TRL's DPOTrainer drops a pair whose prompt alone fills max_length, silently, and dies in a bare torch.cat
    when it drops every pair: the stage counts them and names train.max_length."""
    from stages.train import TrainDataError

    long = [{"role": "user", "content": "Think about sums. " * 40 + PROMPT[0]["content"]}]
    pairs = _pairs(4)
    for r in pairs[2:]:
        r["prompt"] = long
    metrics = train(tiny_model, pairs, tmp_path / "m", TrainConfig(alpha=0.0, args={**ARGS, "max_length": 64}))
    assert metrics["dropped_long_prompt"] == 2 and metrics["steps"] == 1  # 2 pairs left, 2 per step
    with pytest.raises(TrainDataError, match=r"^train.max_length=64: the prompt of each of the 2 pairs fills it"):
        train(tiny_model, pairs[2:], tmp_path / "n", TrainConfig(alpha=0.0, args={**ARGS, "max_length": 64}))


def test_no_examples_keeps_the_model_unchanged(tiny_model, tmp_path):
    metrics = train(tiny_model, [], tmp_path / "same", TrainConfig())
    assert metrics["skipped"] and metrics["steps"] == 0
    before, after = _weights(tiny_model), _weights(tmp_path / "same")
    assert _changed(before, after) == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU setting applies only where training runs on CPU")
def test_cpu_lm_head_matches_trls_own_head(tiny_model, monkeypatch):
    """The train stage's CPU setting of TRL's fused LM head (only labelled positions, narrow vocabulary tiles)
    gives TRL's own log-probabilities, entropies and gradients; and TRL still has the names it sets (a TRL
    upgrade that renames them would silently fall back to the slow head)."""
    from contextlib import nullcontext

    import trl.trainer.utils as head
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from stages.train import CPU_VOCAB_TILE, _cpu_lm_head

    assert hasattr(head, "_use_triton") and hasattr(head, "_CHUNKED_LOGPROB_CHUNK_SIZE")
    scored = []  # (positions, vocabulary tile) of every call of TRL's chunked log-prob function
    apply = head._ChunkedLogProbFunction.apply
    monkeypatch.setattr(head._ChunkedLogProbFunction, "apply",
                        lambda *a: scored.append((a[0].shape[0], a[5])) or apply(*a))

    def run(ctx):
        model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        assert model.config.vocab_size > 2 * CPU_VOCAB_TILE  # several tiles, one of them partial
        add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
        ids = torch.randint(0, model.config.vocab_size, (3, 24), generator=torch.Generator().manual_seed(0))
        labels = ids.clone()
        labels[:, :9] = -100  # the prompt
        labels[2, 17:] = -100  # padding
        with ctx:
            out = model(input_ids=ids, labels=labels, fused_lm_head=True)
            (out.log_probs.sum() + 0.1 * out.entropy.sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out, grads

    saved = head._use_triton, head._CHUNKED_LOGPROB_CHUNK_SIZE
    ours, ours_grads = run(_cpu_lm_head())
    assert (head._use_triton, head._CHUNKED_LOGPROB_CHUNK_SIZE) == saved  # restored after the block
    trls, trls_grads = run(nullcontext())
    assert scored == [(2 * 15 + 8, CPU_VOCAB_TILE), (3 * 23, saved[1])]  # labelled positions only vs all of them
    for field in ("log_probs", "entropy", "mean_logits"):
        torch.testing.assert_close(getattr(ours, field), getattr(trls, field), rtol=1e-4, atol=1e-5)
    assert torch.equal(ours.is_top1, trls.is_top1)
    assert ours_grads.keys() == trls_grads.keys() and ours_grads
    for n in ours_grads:
        torch.testing.assert_close(ours_grads[n], trls_grads[n], rtol=1e-3, atol=1e-6)
