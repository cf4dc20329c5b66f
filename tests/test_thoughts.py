"""TPO pieces: thought prompts, the thought/response split, the judge seeing responses only, length-controlled
pair selection and unparsed outputs as rejected only."""

from __future__ import annotations

import pytest

from stages.judge import JudgeConfig, judge
from stages.pairs import PairsConfig, build_pairs
from stages.thoughts import ThoughtConfig, split, split_records, wrap

T = ThoughtConfig(template="{instruction}\nThink first.", name="generic")


def test_split_at_the_markers():
    s = split("Thoughts:\nThe user wants a greeting.\nResponse:\nHello!", T)
    assert s == {"thought": "The user wants a greeting.", "response": "Hello!", "parsed": True, "parse_error": ""}


@pytest.mark.parametrize("text,thought,response", [
    ("## Thoughts\nplan it\n**Response:**\nDone.", "plan it", "Done."),  # markdown-decorated markers
    ("thoughts: a\nRESPONSE: b", "a", "b"),  # any case, text on the marker line
    ("Thoughts:\nx\nResponse to the user follows.\n**Response**:\ny", "x\nResponse to the user follows.", "y"),
    ("no thought marker, still thinking\nResponse:\nok", "no thought marker, still thinking", "ok"),
    # repeated: the last response-marker line starts the response; a draft stays in the thoughts
    ("Thoughts:\nDraft:\nResponse:\nfirst try\nToo long, fix it.\nResponse:\nshort", "Draft:\nResponse:\nfirst try\n"
     "Too long, fix it.", "short"),
    ("Thoughts:\nmy draft response: hi\nResponse:\nhello", "my draft response: hi", "hello"),  # mid-line: no marker
])
def test_split_variants(text, thought, response):
    s = split(text, T)
    assert (s["thought"], s["response"], s["parsed"]) == (thought, response, True)


@pytest.mark.parametrize("text,error", [
    ("Just an answer without markers.", "no response marker"),
    ("Thoughts:\nhmm\nThe answer is 4.", "no response marker"),
    ("Response:\nonly an answer", "empty thought"),
    ("Thoughts:\n\nResponse:\nanswer", "empty thought"),
    ("Thoughts:\nI should greet.\nResponse:\n   ", "empty response"),
    ("", "no response marker"),
])
def test_outputs_that_do_not_parse_are_flagged(text, error):
    s = split(text, T)
    assert not s["parsed"] and s["parse_error"] == error


def test_without_thoughts_everything_is_the_response():
    assert split(" answer ", ThoughtConfig()) == {"thought": "", "response": "answer", "parsed": True, "parse_error": ""}


def test_custom_markers_and_bad_templates():
    cfg = ThoughtConfig(template="{instruction}", thought_marker="<think>", response_marker="<answer>")
    assert split("<think> a\n<answer> b", cfg)["response"] == "b"
    with pytest.raises(ValueError, match="must contain {instruction}"):
        ThoughtConfig(template="think first")


def test_wrap_puts_the_last_user_message_into_the_template():
    prompts = [{"prompt_id": "a", "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]}]
    out = wrap(prompts, T)
    assert out[0]["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q\nThink first."}]
    assert prompts[0]["messages"][1]["content"] == "Q"  # the original (what the judge sees) is untouched
    assert wrap(prompts, ThoughtConfig()) is prompts


def test_split_records_stats():
    recs = [{"completion": c} for c in ("Thoughts:\nab\nResponse:\ncd", "Thoughts:\nabcd\nResponse:\nxy", "none")]
    out, stats = split_records(recs, T)
    assert [r["parsed"] for r in out] == [True, True, False]
    assert stats["parse_failure_rate"] == pytest.approx(1 / 3) and stats["parse_no_response_marker"] == 1
    assert stats["thought_chars"] == 3 and stats["response_chars"] == 2


def test_the_judge_sees_the_response_only_and_skips_unparsed():
    prompts = [{"prompt_id": "p", "messages": [{"role": "user", "content": "Q"}]}]
    cands = [{"prompt_id": "p", "sample_idx": 0, "completion": "Thoughts:\nUNJUDGEABLE\nResponse:\nfine",
              "thought": "UNJUDGEABLE", "response": "fine", "parsed": True},
             {"prompt_id": "p", "sample_idx": 1, "completion": "no markers", "thought": "no markers", "response": "",
              "parsed": False}]
    cfg = JudgeConfig(template="I: {instruction}\nResponse: {response}\nAfter examining", num_judgments=2)
    recs, stats = judge("py:tests.fake_models:checksum_judge", prompts, cands, cfg)
    # the scripted judge refuses anything containing UNJUDGEABLE: it only saw "fine"
    assert recs[0]["num_valid"] >= 1 and recs[0]["reward"] is not None
    assert recs[1]["status"] == "unparsed" and recs[1]["judgments"] == [] and stats["unparsed_responses"] == 1


# --------------------------------------------------------------------------- length-controlled pairs


def _cands(rows, pid="p"):
    """rows: (score, response length[, parsed])."""
    out = []
    for k, row in enumerate(rows):
        score, length, parsed = (*row, True)[:3]
        response = chr(97 + k) * length
        out.append({"prompt_id": pid, "sample_idx": k, "completion": f"Thoughts:\nt{k}\nResponse:\n{response}",
                    "thought": f"t{k}", "response": response if parsed else "", "parsed": parsed,
                    "reward": score if parsed else None, "status": "scored" if parsed else "unparsed"})
    return out


P = [{"prompt_id": "p", "messages": [{"role": "user", "content": "Q"}]}]


def _pick(rows, **kw):
    pairs, stats = build_pairs(P, _cands(rows), PairsConfig(rule="score", **kw))
    return [(r["chosen_sample_idx"], r["rejected_sample_idx"]) for r in pairs], stats


def test_zscore_length_control():
    rows = [(5, 400), (4.5, 50), (1, 60), (1.5, 500)]
    assert _pick(rows)[0] == [(0, 2)]  # rho = 0: plain best vs worst
    assert _pick(rows, length_control="zscore", rho=0.0)[0] == [(0, 2)]
    assert _pick(rows, length_control="zscore", rho=0.5)[0] == [(1, 3)]  # shorter good one, longer bad one
    pairs, stats = _pick(rows, length_control="zscore", rho=0.5)
    assert stats["chosen_chars"] == 50 and stats["rejected_chars"] == 500 and stats["length_gap"] == -450
    assert stats["chosen_longer_share"] == 0


def test_bands_length_control():
    rows = [(5, 400), (4, 50), (2, 60), (1, 10), (1.2, 300)]
    assert _pick(rows, length_control="bands", rho=0.0)[0] == [(0, 3)]
    # band = 0.3 * 4 = 1.2: chosen = shortest of scores >= 3.8, rejected = longest of scores <= 2.2
    assert _pick(rows, length_control="bands", rho=0.3)[0] == [(1, 4)]


@pytest.mark.parametrize("lc,rho", [("none", 0.0), ("zscore", 0.5), ("bands", 0.5)])
def test_equal_scores_never_make_a_pair_whatever_the_lengths(lc, rho):
    pairs, stats = _pick([(3, 10), (3, 500), (3, 80)], length_control=lc, rho=rho)
    assert pairs == [] and stats["skipped_tie"] == 1


def test_length_cannot_turn_a_pair_around():
    # rho large enough that the long top-scorer has the lowest s: chosen would score below rejected -> no pair
    pairs, stats = _pick([(5, 1000), (4.9, 10)], length_control="zscore", rho=1.0)
    assert pairs == [] and stats["skipped_tie"] == 1


def test_bands_at_rho_half_do_not_pair_a_response_with_itself():
    # sample 2 (score 3) sits in both bands: it is the shortest top one, so the longest bottom one is sample 1
    pairs, _ = _pick([(4, 50), (2, 3), (3, 5)], length_control="bands", rho=0.5)
    assert pairs == [(2, 1)]


def test_ties_in_length_are_broken_by_a_seeded_draw():
    rows = [(5, 40), (5, 40), (1, 10)]
    picks = {_pick(rows, length_control="zscore", rho=0.3, seed=s)[0][0][0] for s in range(12)}
    assert picks == {0, 1}
    assert _pick(rows, length_control="zscore", rho=0.3, seed=3) == _pick(rows, length_control="zscore", rho=0.3, seed=3)


def test_unparsed_outputs_are_rejected_only_and_capped():
    prompts = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": "Q"}]} for i in range(10)]
    cands = [c for i in range(10) for c in _cands([(5, 10), (1, 20), (0, 0, False)], pid=f"p{i}")]
    pairs, stats = build_pairs(prompts, cands, PairsConfig(rule="score", max_unparsed_share=0.1))
    unparsed = [p for p in pairs if p["rejected_unparsed"]]
    assert len(pairs) == 11 and len(unparsed) == 1 and stats["unparsed_pairs"] == 1 and stats["unparsed_dropped"] == 9
    assert len(unparsed) / len(pairs) <= 0.1
    assert all(p["chosen_sample_idx"] != 2 for p in pairs)  # an unparsed output is never chosen
    assert unparsed[0]["rejected"][0]["content"].startswith("Thoughts:") and unparsed[0]["chosen_sample_idx"] == 0
    pairs, stats = build_pairs(prompts, cands, PairsConfig(rule="score"))  # default: none
    assert len(pairs) == 10 and stats["unparsed_pairs"] == 0


def test_pairs_train_on_the_whole_output_with_the_thought_prompt():
    prompts = wrap(P, T)
    pairs, _ = build_pairs(prompts, _cands([(5, 10), (1, 20)]), PairsConfig(rule="score"))
    assert pairs[0]["prompt"][-1]["content"] == "Q\nThink first."
    assert pairs[0]["chosen"][0]["content"] == "Thoughts:\nt0\nResponse:\naaaaaaaaaa"
    assert pairs[0]["pair_type"] == "actor"


def test_pairs_config_refuses_bad_length_control():
    with pytest.raises(ValueError, match="length_control"):
        PairsConfig(rule="score", length_control="short")
    with pytest.raises(ValueError, match="rho needs"):
        PairsConfig(rule="score", rho=0.3)
    with pytest.raises(ValueError, match="max_unparsed_share"):
        PairsConfig(rule="score", max_unparsed_share=1.0)
