"""Self-instruct: ROUGE-L, cleaning, each filter with its count, seed pools, and the stage with a scripted writer."""

import json

import pytest

from stages.bootstrap import SEED_RESPONSES, bootstrap_examples
from stages.tasks.constraints import satisfied
from stages.judge import parse_score
from stages.self_instruct import SEED_INSTRUCTIONS, PromptsConfig, clean, filter_instructions, load_seed_pool, \
    rouge_l, self_instruct

SI = dict(source="self_instruct", template="Examples:\n{examples}\nWrite one.", num_prompts=3, num_candidates=6)


def test_rouge_l():
    assert rouge_l("the cat sat", "the cat sat") == 1.0
    assert rouge_l("a b c d", "x y z") == 0.0
    assert rouge_l("", "x") == 0.0
    # LCS of "the cat sat on mat" / "the dog sat on a mat" = the sat on mat (4): P 4/5, R 4/6
    assert rouge_l("The cat sat on mat", "the dog sat on a mat") == pytest.approx(2 * 0.8 * (4 / 6) / (0.8 + 4 / 6))


@pytest.mark.parametrize("raw,expected", [
    ("Task 9: Write a poem about rain.", "Write a poem about rain."),
    ("\n\n  3. Explain tides.\nMore text", "Explain tides."),
    ("\"Describe a cat.\"", "Describe a cat."),
    ("**New task:** List three fruits.", "List three fruits."),
    ("- Plan a picnic for four people.", "Plan a picnic for four people."),
    ("   ", ""),
])
def test_clean(raw, expected):
    assert clean(raw) == expected


def test_each_filter_drops_and_counts():
    cfg = PromptsConfig(**{**SI, "num_prompts": 2, "min_words": 3, "max_words": 12})
    pool = ["Explain the difference between weather and climate."]
    cands = [
        "",                                                        # empty
        "Hi there.",                                               # length: 2 words
        "Write a very long task that goes on and on and on and on and on forever.",  # length: > 12
        "Draw a picture of a horse in the snow.",                  # banned: draw, picture
        "Explain the difference between weather and the climate.",  # similar to the seed pool
        "Give three reasons to learn to cook at home.",            # kept
        "Give three reasons to learn to cook at home!",            # similar to a kept one
        "Suggest a weekend plan for a family of four.",            # kept
        "Name two rivers in Europe and their lengths.",            # over target
    ]
    kept, counts = filter_instructions(cands, pool, cfg)
    assert kept == ["Give three reasons to learn to cook at home.", "Suggest a weekend plan for a family of four."]
    assert counts == {"written": 9, "empty": 1, "length": 2, "banned": 1, "similar_seed": 1, "similar_kept": 1,
                      "over_target": 1, "kept": 2}


def test_seed_pool_files(tmp_path):
    assert load_seed_pool("builtin") == SEED_INSTRUCTIONS
    (tmp_path / "p.txt").write_text("Do one thing.\n\nDo another thing.\nDo one thing.\n")
    assert load_seed_pool(str(tmp_path / "p.txt")) == ["Do one thing.", "Do another thing."]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"instruction": f"Task {i}"}) for i in range(3)))
    assert len(load_seed_pool(str(tmp_path / "p.jsonl"))) == 3
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(ValueError, match="instruction"):
        load_seed_pool(str(tmp_path / "bad.jsonl"))
    with pytest.raises(FileNotFoundError, match="seed_pool"):
        load_seed_pool(str(tmp_path / "missing.txt"))
    (tmp_path / "broken.jsonl").write_text('{"instruction": "a"}\n{"instruction": "b\n')
    with pytest.raises(ValueError, match=f"^prompts.seed_pool: {tmp_path / 'broken.jsonl'}:2: not a JSON object"):
        load_seed_pool(str(tmp_path / "broken.jsonl"))
    (tmp_path / "latin1.txt").write_bytes("Do one thing.\nErkläre es.\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"^prompts.seed_pool: {tmp_path / 'latin1.txt'}:2: not UTF-8 text"):
        load_seed_pool(str(tmp_path / "latin1.txt"))


def test_a_bad_seed_pool_is_refused_before_any_model_loads(tmp_path):
    """It used to surface in iteration 1's prompts stage, after M0's evaluation."""
    from conftest import TINY, compose_config
    from pipeline.config import ConfigError
    from pipeline.loop import run

    cfg = compose_config("method=self_rewarding", *TINY, "iterations=1", "logger=none",
                         f"paths.cache_dir={tmp_path / 'cache'}", f"prompts.seed_pool={tmp_path / 'missing.txt'}")
    with pytest.raises(ConfigError, match="prompts.seed_pool: file not found"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "iter_00").exists() and not (tmp_path / "cache").exists()


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="source"):
        PromptsConfig(source="web")
    with pytest.raises(ValueError, match="examples"):
        PromptsConfig(source="self_instruct", template="no placeholder")
    with pytest.raises(ValueError, match="num_candidates"):
        PromptsConfig(**{**SI, "num_prompts": 10, "num_candidates": 5})
    with pytest.raises(ValueError, match="generated_shots"):
        PromptsConfig(**{**SI, "shots": 2, "generated_shots": 3})


def test_stage_with_scripted_writer_uses_generated_shots():
    cfg = PromptsConfig(**SI)
    recs, stats = self_instruct("py:tests.fake_models:writer", cfg, iteration=1)
    assert stats["written"] == 6 and stats["kept"] == len(recs) <= 3
    assert all(r["messages"] == [{"role": "user", "content": r["question"]}] for r in recs)
    assert [r["prompt_id"] for r in recs] == [f"si-01-{k:04d}" for k in range(len(recs))]
    again, _ = self_instruct("py:tests.fake_models:writer", cfg, iteration=1)
    assert again == recs  # deterministic
    # iteration 2 shows 2 of the previous iteration's instructions among the 8 shots
    seen = []

    import tests.fake_models as fm
    orig = fm.writer

    def spy(prompts, c):
        seen.extend(p["messages"][0]["content"] for p in prompts)
        return orig(prompts, c)

    fm.spy_writer = spy
    self_instruct("py:tests.fake_models:spy_writer", cfg, iteration=2, previous=["Previously written task A."])
    assert all("Previously written task A." in s for s in seen)


def test_seed_responses_follow_their_own_constraints():
    from stages.tasks.constraints import TOPICS  # noqa: F401  (import check)

    checks = {
        "Describe how to boil an egg. Use exactly 4 bullet points.": {"type": "bullets", "n": 4},
        "Summarize the story of Little Red Riding Hood in at most 40 words.": {"type": "max_words", "n": 40},
        "Explain why the ocean is salty. Do not use the word \"salt\".": {"type": "exclude_word", "word": "salt"},
        "Describe the smell of fresh bread. Write your entire answer in lowercase letters.": {"type": "lowercase"},
        "Compare cats and dogs as pets in exactly 2 paragraphs separated by a blank line.":
            {"type": "paragraphs", "n": 2},
        "Describe a sunset over the sea. Wrap your entire answer in double quotation marks.": {"type": "quotes"},
        "Write a thank-you note to a teacher. End your answer with the exact phrase \"With gratitude.\"":
            {"type": "end_phrase", "phrase": "With gratitude."},
        "Describe your favourite season and why you like it. Do not use any commas.": {"type": "no_commas"},
        "Write a short product description for a reusable water bottle. Include the word \"durable\".":
            {"type": "include_word", "word": "durable"},
    }
    for q, c in checks.items():
        assert satisfied(SEED_RESPONSES[q], c), q
    assert set(SEED_RESPONSES) <= set(SEED_INSTRUCTIONS)


def test_bootstrap_examples_teach_the_judge_format_with_a_spread_of_scores():
    template = "Instruction: {instruction}\nResponse: {response}\nScore it."
    recs = bootstrap_examples(template)
    ift = [r for r in recs if r["kind"] == "ift"]
    eft = [r for r in recs if r["kind"] == "eft"]
    assert len(ift) == len(SEED_RESPONSES) and len(eft) == 4 * len(SEED_RESPONSES)
    assert {r["score"] for r in eft} == {0.0, 2.0, 3.0, 5.0}
    for r in eft:
        assert parse_score(r["completion"][0]["content"]) == r["score"]
        assert r["prompt"][0]["content"].startswith("Instruction: ")
    assert len(bootstrap_examples(template, ift=False)) == len(eft)
    pairwise = [r for r in bootstrap_examples(template, pairwise_template="{instruction}|{response_a}|{response_b}")
                if r["kind"] == "pairwise"]
    assert len(pairwise) == 2 * len(SEED_RESPONSES)
    for q, good in SEED_RESPONSES.items():  # the written response wins in both orders: no favourite position
        shown = [r for r in pairwise if r["prompt"][0]["content"].startswith(q + "|")]
        verdicts = {r["prompt"][0]["content"].split("|")[1 if r["completion"][0]["content"].endswith("A") else 2]
                    for r in shown}
        assert verdicts == {good} and {r["completion"][0]["content"][-1] for r in shown} == {"A", "B"}
