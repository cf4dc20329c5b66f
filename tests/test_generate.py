"""The generate stage's own decoding loop against transformers' `generate`, and its top-p sampler."""

from __future__ import annotations

import pytest
import torch

from stages.generate import GenerateConfig, _top_p_sample, decode, generate
from stages.modeling import load_model, load_tokenizer, stop_token_ids

PROMPTS = [[{"role": "user", "content": "Hi"}], [{"role": "user", "content": "What is 12 + 30? Think step by step."}],
           [{"role": "user", "content": "Write a haiku about the sea, then explain it in two sentences."}]]


@pytest.fixture(scope="module")
def smol(tiny_model):
    tok = load_tokenizer(tiny_model)
    return tok, load_model(tiny_model, "float32", "cpu")


def _batch(tok):
    texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in PROMPTS]
    return tok.pad({"input_ids": [tok(t, add_special_tokens=False).input_ids for t in texts]}, return_tensors="pt")


def test_greedy_decoding_equals_transformers_generate_with_left_padding(smol):
    tok, model = smol
    batch = _batch(tok)  # three prompts of different lengths: left padding, per-row positions
    stops = stop_token_ids(tok, model)
    ours = decode(model, batch["input_ids"], batch["attention_mask"], GenerateConfig(temperature=0, num_samples=1,
                                                                                     max_new_tokens=24), stops,
                  tok.pad_token_id)
    ref = model.generate(**batch, do_sample=False, max_new_tokens=24, pad_token_id=tok.pad_token_id,
                         eos_token_id=stops)[:, batch["input_ids"].shape[1]:]
    for a, b in zip(ours.tolist(), ref.tolist()):  # transformers pads after a stop the same way
        assert a[: len(b)] == b and all(t == tok.pad_token_id for t in a[len(b):])


def test_the_kv_cache_goes_by_the_name_the_models_forward_takes(smol):
    """transformers 5.24 takes the cache as `cache` and deprecates `past_key_values` (removed in 5.40, where the old
    name would fall into **kwargs and every step decode one token without its context); 5.20 (the vllm extra's pin)
    takes only `past_key_values`. Either way decode gives the same tokens and no deprecation notice."""
    import warnings

    tok, model = smol
    batch, stops = _batch(tok), stop_token_ids(tok, model)
    cfg = GenerateConfig(temperature=0, num_samples=1, max_new_tokens=12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = decode(model, batch["input_ids"], batch["attention_mask"], cfg, stops, tok.pad_token_id)
    assert not [w for w in caught if "past_key_values" in str(w.message)], [str(w.message) for w in caught]

    class OldForward(torch.nn.Module):  # a forward with transformers 5.20's keyword (its signature, the same model)
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=None,
                    logits_to_keep=0):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              cache=past_key_values, use_cache=use_cache, logits_to_keep=logits_to_keep)

    old = decode(OldForward(), batch["input_ids"], batch["attention_mask"], cfg, stops, tok.pad_token_id)
    assert old.tolist() == ours.tolist()


def test_samples_repeat_the_prompt_cache_and_finished_rows_leave_the_batch(smol):
    """Each sample's continuation must be what the model gives for that prompt alone: greedy decoding of
    prompt rows repeated by num_samples (the cache repeated after one prefill) equals greedy decoding of
    each prompt on its own, also after some rows stopped early."""
    tok, model = smol
    batch = _batch(tok)
    stops = stop_token_ids(tok, model)
    cfg = GenerateConfig(temperature=0, num_samples=1, max_new_tokens=16)
    single = decode(model, batch["input_ids"], batch["attention_mask"], cfg, stops, tok.pad_token_id)
    cfg3 = GenerateConfig(temperature=1e-4, num_samples=3, max_new_tokens=16, top_p=1.0)  # ~greedy, sampled path
    torch.manual_seed(0)
    three = decode(model, batch["input_ids"], batch["attention_mask"], cfg3, stops, tok.pad_token_id)
    assert three.shape == (9, 16)
    for i in range(3):
        for s in range(3):
            assert three[3 * i + s].tolist() == single[i].tolist()


def test_top_p_sampling_draws_only_from_the_nucleus_with_its_probabilities():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.97, 0.01, 0.01, 0.01]]))
    draws = torch.stack([_top_p_sample(logits, 0.8) for _ in range(4000)])
    first, second = draws[:, 0], draws[:, 1]
    assert set(first.tolist()) == {0, 1}  # 0.5 + 0.3 reach 0.8: tokens 2 and 3 are outside the nucleus
    assert abs((first == 0).float().mean().item() - 0.5 / 0.8) < 0.03
    assert set(second.tolist()) == {0}  # the top token alone reaches top_p


def test_top_p_falls_back_to_the_whole_vocabulary_when_the_candidates_are_too_few(monkeypatch):
    import stages.generate as g

    monkeypatch.setattr(g, "NUCLEUS_CANDIDATES", 2)  # a flat distribution: 2 candidates hold only half the mass
    torch.manual_seed(0)
    draws = {_top_p_sample(torch.zeros(1, 4), 0.9).item() for _ in range(400)}
    assert draws == {0, 1, 2, 3}


def test_same_seed_same_samples_and_stop_reasons(tiny_model):
    prompts = [{"prompt_id": f"p{i}", "messages": m} for i, m in enumerate(PROMPTS)]
    cfg = GenerateConfig(num_samples=2, max_new_tokens=12, seed=5)
    a, b = generate(tiny_model, prompts, cfg)[0], generate(tiny_model, prompts, cfg)[0]
    assert a == b and len(a) == 6 and {r["finish_reason"] for r in a} <= {"stop", "length"}
    assert all(r["num_tokens"] == 12 for r in a if r["finish_reason"] == "length")


def test_an_assistant_message_last_is_continued_not_answered(tiny_model):
    """SEELE's hint (stages/hints.py) is the start of the answer: the model's input ends with the hint itself (no
    end-of-turn, no new assistant turn) and the record holds only the continuation, leading whitespace kept."""
    from stages.generate import chat_prompt

    tok = load_tokenizer(tiny_model)
    question = [{"role": "user", "content": "What is 3 + 4?"}]
    hinted = question + [{"role": "assistant", "content": "Step 1: 3 + 4 = 7"}]
    assert chat_prompt(tok, hinted).endswith("<|im_start|>assistant\nStep 1: 3 + 4 = 7")
    assert chat_prompt(tok, question).endswith("<|im_start|>assistant\n")
    cfg = GenerateConfig(num_samples=1, temperature=0, max_new_tokens=8, seed=0)
    rec = generate(tiny_model, [{"prompt_id": "h", "messages": hinted}], cfg)[0][0]
    model = load_model(tiny_model, "float32", "cpu")
    ids = tok(chat_prompt(tok, hinted), return_tensors="pt", add_special_tokens=False).input_ids
    new = decode(model, ids, torch.ones_like(ids), cfg, stop_token_ids(tok, model), tok.pad_token_id)[0]
    assert rec["completion"] == tok.decode(new[: rec["num_tokens"]], skip_special_tokens=True).rstrip()
