"""Evaluate: one model on the task's held-out prompts (IRPO step 6), the same way at every iteration, iteration 0
(the starting model) included.

The model answers every held-out prompt once with greedy decoding; the task's checker (stages/tasks/) gives each
answer its verdict. Then every measure listed in ``measures`` adds its figures — each a small function of
`Evaluation` below, listed in `MEASURES`; a new measure is one function and one entry there:

* ``accuracy`` — share of answers the checker calls correct (the answer must be in the asked-for form), and the
  share with no parseable answer. On the constraints task: the share meeting every constraint (prompt level); on
  a code task: pass@1 (the greedy program passes every test in the sandbox), also reported as ``pass@1``.
* ``lenient`` — accuracy that also accepts the last number of the answer (tells format learning apart from
  getting the arithmetic right).
* ``constraints`` — the share of constraints met (instruction level; the checker's graded score).
* ``maj`` — majority vote over ``maj_k`` sampled answers (maj@k; ties broken by the first answer to reach the top
  count) — the paper's maj@32.
* ``refine`` — the improvement cycle with tool feedback on the held-out set (stages/refine.py): each wrong greedy
  answer goes back to the model with what the task's checker said (``refine_template``), for ``refine_rounds``
  rounds, greedy, one thread per prompt; ``accuracy_round_r`` is the share solved by round r (r = 0: accuracy).
* ``win_rate`` — M(t) against M0 on the same prompts (M0's greedy answers from iteration 0), each pair judged in
  both orders by ``win_rate_judge`` with ``pairwise_template`` (stages/compare.py): wins, ties, losses, position
  bias.
* ``judge_quality`` — the LLM judge (the judge config, with M(t) as the judge being improved) scores each answer;
  ``judge_agreement`` is the probability that, of two answers meeting a different share of their constraints, the
  judge scores the better one higher (ties count half; 0.5 = chance), plus the score histogram (collapse).

With thoughts (TPO, ``thought_cfg``) the prompts are asked with the thought prompt and every measure reads the
response part; an output whose split fails counts whole as its response (what a user would see), and the
parse-failure rate and thought / response lengths are reported. Every model call goes through the run's engine
(``cfg.engine``), so ``generate=vllm`` evaluates on vLLM too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from stages.generate import Engine, generate
from stages.refine import DEFAULT_TEMPLATE, check_template
from stages.thoughts import ThoughtConfig, split_records, wrap
from stages.verify import CORRECT, UNPARSEABLE, VerifyConfig, _plain, answers_match


@dataclass
class EvalConfig:
    measures: list[str] = field(default_factory=lambda: ["accuracy", "lenient"])  # names in MEASURES
    max_new_tokens: int = 256
    batch_size: int = 32  # prompts per forward pass
    maj_k: int = 0  # measure maj: samples voted over (paper: 32)
    maj_temperature: float = 0.8
    maj_top_p: float = 0.95
    seed: int = 0
    # measure win_rate: M(t) vs M0 on held-out prompts, both orders
    win_rate_judge: str = "initial"  # initial (M0) | current (M(t)) | a path | py:module:function
    pairwise_template: str = ""  # {instruction}, {response_a}, {response_b}; ends in "Winner: A/B/tie"
    pairwise_max_new_tokens: int = 128
    # measure refine: feedback rounds on the held-out answers
    refine_rounds: int = 0  # R (0 without the measure)
    refine_template: str = DEFAULT_TEMPLATE  # the follow-up turn: {feedback}, {prompt} (the refine group's template)
    engine: Engine = field(default_factory=Engine)  # the run's engine (set by the pipeline)

    def __post_init__(self) -> None:
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"eval.measures: unknown {unknown}; choose from {list(MEASURES)}")
        if "accuracy" not in self.measures:  # was a KeyError in the first summary line, after M0's evaluation
            raise ValueError(f"eval.measures must include accuracy, the held-out figure every summary line, table and "
                             f"report reads (got {self.measures})")
        if "win_rate" in self.measures:
            from stages.compare import CompareConfig

            if not self.pairwise_template:  # was "pairwise template must contain [...]", not saying which
                raise ValueError("eval.measures win_rate judges M(t) against M0 with eval.pairwise_template, which is "
                                 "empty: use eval=open (it sets one) or set eval.pairwise_template")
            try:
                CompareConfig(template=self.pairwise_template)  # refuses a template without its placeholders
            except ValueError as e:
                raise ValueError(f"eval.pairwise_template: {e}") from None
        if self.maj_k < 2 if "maj" in self.measures else self.maj_k != 0:
            raise ValueError(f"eval.maj_k must be >= 2 with the measure maj and 0 without it, got {self.maj_k} "
                             f"(measures {self.measures})")
        if ("refine" in self.measures) != (self.refine_rounds >= 1) or self.refine_rounds < 0:
            raise ValueError(f"eval.refine_rounds must be >= 1 with the measure refine and 0 without it, got "
                             f"{self.refine_rounds} (measures {self.measures})")
        check_template(self.refine_template, "eval.refine_template (= refine.template)")  # conf/eval/: unless set
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.pairwise_max_new_tokens < 1:
            raise ValueError("eval.max_new_tokens, eval.batch_size and eval.pairwise_max_new_tokens must be >= 1")
        if self.maj_temperature <= 0 or not 0 < self.maj_top_p <= 1:
            raise ValueError("eval.maj_temperature must be > 0 and eval.maj_top_p in (0, 1]")

    @property
    def win_rate(self) -> bool:
        return "win_rate" in self.measures


@dataclass
class Evaluation:
    """What a measure reads: the model, the prompts, the checked greedy answers (`records`, one per prompt, which
    a measure may add columns to) and everything needed to sample more or call a judge."""

    model_path: str
    prompts: list[dict]
    records: list[dict]
    cfg: EvalConfig
    check: VerifyConfig
    thought: ThoughtConfig
    desc: str
    baseline: list[dict] | None = None  # M0's records (win rate; None at iteration 0)
    judge_cfg: object = None  # the LLM judge whose quality is measured
    judge_model: str | None = None
    win_judge_model: str | None = None
    model: object = None  # the loaded HF model and tokenizer (None on vLLM)
    tokenizer: object = None

    def task(self):
        from stages.tasks import load_task

        return load_task(self.check.task)


def evaluate(model_path: str, prompts: list[dict], cfg: EvalConfig, check: VerifyConfig, desc: str = "evaluate",
             baseline: list[dict] | None = None, judge_cfg=None, judge_model: str | None = None,
             win_judge_model: str | None = None, thought_cfg: ThoughtConfig | None = None) -> tuple[list[dict], dict]:
    """prompts: held-out records with prompt_id and messages (problems of `check.task`). check: the task's checker
    settings. baseline: M0's evaluation records (win rate). judge_cfg/judge_model: the LLM judge whose quality is
    measured. Returns (one record per prompt, metrics)."""
    thought_cfg = thought_cfg or ThoughtConfig()
    ev = Evaluation(model_path, prompts, [], cfg, check, thought_cfg, desc, baseline, judge_cfg, judge_model,
                    win_judge_model)
    if cfg.engine.backend == "hf":  # loaded once for the greedy answers and the maj@k samples
        from stages.modeling import load_model, load_tokenizer

        ev.tokenizer, ev.model = load_tokenizer(model_path), load_model(model_path, cfg.engine.dtype, cfg.engine.device)
    greedy = cfg.engine.sampling(num_samples=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens,
                                 batch_size=cfg.batch_size, seed=cfg.seed)
    gens, gen_stats = generate(model_path, wrap(prompts, thought_cfg), greedy, desc=desc, model=ev.model,
                               tokenizer=ev.tokenizer)
    gens, thought_stats = split_records(gens, thought_cfg)
    task = ev.task()
    responses = [g["response"] if g["parsed"] else g["completion"] for g in gens]  # an unparsed output counts whole
    verdicts = task.check_all([(task.problem(g["prompt_id"]), r) for g, r in zip(gens, responses)], check)
    for g, response, v in zip(gens, responses, verdicts):
        problem = task.problem(g["prompt_id"])
        ev.records.append({"prompt_id": g["prompt_id"], "completion": response, "gold": problem.answer,
                           "extracted": v.extracted, "extractor": v.extractor, "status": v.status,
                           "correct": v.status == CORRECT, "score": v.score, "feedback": v.feedback,
                           "feedback_shown": v.shown,
                           "num_tokens": g["num_tokens"]})
        if thought_cfg.enabled:  # completion = the response; the whole output and its thought kept beside it
            ev.records[-1].update({"output": g["completion"], "thought": g["thought"], "parsed": g["parsed"]})
    n = max(len(ev.records), 1)
    metrics = {"questions": len(ev.records), "mean_tokens": sum(r["num_tokens"] for r in ev.records) / n,
               "tokens_per_s": gen_stats["tokens_per_s"], "model_fingerprint": gen_stats["model_fingerprint"],
               "response_chars": sum(len(r["completion"]) for r in ev.records) / n}  # what was checked and judged
    if thought_cfg.enabled:
        metrics.update(thought_stats)
    for name in cfg.measures:
        metrics.update(MEASURES[name](ev))
    ev.model = None
    return ev.records, metrics


# --------------------------------------------------------------------------- the measures


def accuracy(ev: Evaluation) -> dict:
    """Accuracy; on a code task it is pass@1 (the greedy program passes every test) and is also named so."""
    n = max(len(ev.records), 1)
    out = {"accuracy": sum(r["correct"] for r in ev.records) / n,
           "unparseable_rate": sum(r["status"] == UNPARSEABLE for r in ev.records) / n}
    if ev.task().kind == "program":
        out["pass@1"] = out["accuracy"]
    return out


def lenient(ev: Evaluation) -> dict:
    """Nothing for a task whose checker reads no final answer (programs, rules): it would equal accuracy."""
    task, check = ev.task(), ev.check.lenient()
    if task.kind != "answer":
        return {}
    for r in ev.records:
        r["correct_lenient"] = task.check(task.problem(r["prompt_id"]), r["completion"], check).status == CORRECT
    return {"accuracy_lenient": sum(r["correct_lenient"] for r in ev.records) / max(len(ev.records), 1)}


def constraints(ev: Evaluation) -> dict:
    """The share of constraints met: the mean of the checker's graded scores."""
    for r in ev.records:
        r["constraints_met"] = r["score"]
    return {"instruction_accuracy": sum(r["score"] for r in ev.records) / max(len(ev.records), 1)}


def _vote_key(span: str) -> str:
    v = _plain(span)
    return repr(v) if v is not None else span.strip().lower()


def majority(ev: Evaluation) -> dict:
    cfg, task = ev.cfg, ev.task()
    sampled = cfg.engine.sampling(num_samples=cfg.maj_k, temperature=cfg.maj_temperature, top_p=cfg.maj_top_p,
                                  max_new_tokens=cfg.max_new_tokens, batch_size=max(1, cfg.batch_size // cfg.maj_k),
                                  seed=cfg.seed)
    samples, _ = generate(ev.model_path, wrap(ev.prompts, ev.thought), sampled, desc=f"{ev.desc} maj@{cfg.maj_k}",
                          model=ev.model, tokenizer=ev.tokenizer)
    votes: dict[str, Counter] = {}
    first: dict[str, dict[str, str]] = {}
    for s in split_records(samples, ev.thought)[0]:
        v = task.check(task.problem(s["prompt_id"]), s["response"] if s["parsed"] else s["completion"], ev.check)
        if v.extracted is not None and v.status != UNPARSEABLE:
            key = _vote_key(v.extracted)
            votes.setdefault(s["prompt_id"], Counter())[key] += 1
            first.setdefault(s["prompt_id"], {}).setdefault(key, v.extracted)
    for r in ev.records:
        pid, c = r["prompt_id"], votes.get(r["prompt_id"])
        if c:
            top = max(c.values())
            key = next(k for k in first[pid] if c[k] == top)  # first answer to reach the top count
            r["maj_answer"] = first[pid][key]
            r["maj_correct"] = answers_match(r["gold"], first[pid][key], ev.check.timeout_s) is True
        else:
            r["maj_answer"], r["maj_correct"] = None, False
    return {f"maj@{cfg.maj_k}": sum(r["maj_correct"] for r in ev.records) / max(len(ev.records), 1)}


def refine(ev: Evaluation) -> dict:
    """Accuracy after each feedback round: every wrong greedy answer, its feedback and the model's greedy revision,
    until it passes or refine_rounds rounds are done. Each record gets the round it was first solved in (-1: never)
    and its revisions."""
    from stages.refine import run_rounds
    from stages.verify import Verdict

    cfg = ev.cfg
    first = [{"prompt_id": r["prompt_id"], "completion": r["completion"], "num_tokens": r["num_tokens"],
              "verdict": Verdict.of(r)} for r in ev.records]
    greedy = cfg.engine.sampling(num_samples=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens,
                                 batch_size=cfg.batch_size, seed=cfg.seed)
    attempts, stats = run_rounds(ev.model_path, ev.prompts, first, ev.task(), ev.check, greedy, rounds=cfg.refine_rounds,
                                 keep=1, patience=cfg.refine_rounds, template=cfg.refine_template,
                                 desc=f"{ev.desc} refine", model=ev.model, tokenizer=ev.tokenizer)
    revisions: dict[str, list[dict]] = {}
    for a in attempts:
        if a["round"]:
            revisions.setdefault(a["prompt_id"], []).append(
                {k: a[k] for k in ("round", "completion", "status", "feedback", "feedback_shown", "feedback_kind")})
    for r in ev.records:
        revs = revisions.get(r["prompt_id"], [])
        r["refine_revisions"] = revs
        r["refine_solved_round"] = 0 if r["correct"] else next((a["round"] for a in revs if a["status"] == CORRECT), -1)
    n = max(len(ev.records), 1)
    out = {f"accuracy_round_{k}": sum(0 <= r["refine_solved_round"] <= k for r in ev.records) / n
           for k in range(cfg.refine_rounds + 1)}
    for k in range(1, cfg.refine_rounds + 1):
        out[f"refine_round_{k}_seconds"] = stats.get(f"round_{k}_seconds", 0.0)
        out[f"refine_round_{k}_prompts"] = stats.get(f"round_{k}_prompts", 0)
    out["refine_seconds"] = round(sum(out[f"refine_round_{k}_seconds"] for k in range(1, cfg.refine_rounds + 1)), 1)
    out["refine_tokens"] = sum(stats.get(f"round_{k}_tokens", 0) for k in range(1, cfg.refine_rounds + 1))
    return out


def win_rate(ev: Evaluation) -> dict:
    """M(t) vs M0, both orders (nothing at iteration 0, which has no baseline)."""
    if ev.baseline is None:
        return {}
    from stages.compare import CompareConfig, compare
    from stages.judge import instruction_of

    cfg = ev.cfg
    base = {b["prompt_id"]: b["completion"] for b in ev.baseline}
    instr = {p["prompt_id"]: instruction_of(p["messages"]) for p in ev.prompts}
    mine = [r for r in ev.records if r["prompt_id"] in base]
    ccfg = CompareConfig(template=cfg.pairwise_template, max_new_tokens=cfg.pairwise_max_new_tokens,
                         batch_size=max(1, cfg.batch_size // 2), seed=cfg.seed, engine=cfg.engine)
    outcomes, stats = compare(ev.win_judge_model or ev.model_path,
                              [(instr[r["prompt_id"]], r["completion"], base[r["prompt_id"]]) for r in mine], ccfg,
                              desc=f"{ev.desc} vs M0")
    for r, o in zip(mine, outcomes):
        r.update({"win_score": o["score"], "winner_xy": o["winner_xy"], "winner_yx": o["winner_yx"],
                  "verdict_xy": o["verdict_xy"], "verdict_yx": o["verdict_yx"]})
    return {f"vs_m0_{k}": v for k, v in stats.items()}


def judge_agreement(scores: list[float | None], truth: list[float]) -> float | None:
    """P(judge scores the response meeting more constraints higher), over all pairs of scored responses
    whose rule-check outcomes differ; ties in score count half. None when no such pair exists."""
    pts = [(s, t) for s, t in zip(scores, truth) if s is not None]
    num = den = 0.0
    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            (si, ti), (sj, tj) = pts[i], pts[j]
            if ti == tj:
                continue
            den += 1
            better, worse = (si, sj) if ti > tj else (sj, si)
            num += 1.0 if better > worse else 0.5 if better == worse else 0.0
    return num / den if den else None


def judge_quality(ev: Evaluation) -> dict:
    """The LLM judge on the held-out answers: agreement with the checker's graded scores, and the histogram."""
    if ev.judge_cfg is None:
        return {}
    from stages.judge import judge, score_stats

    cands = [{"prompt_id": r["prompt_id"], "sample_idx": 0, "completion": r["completion"]} for r in ev.records]
    judged, stats = judge(ev.judge_model or ev.model_path, ev.prompts, cands, ev.judge_cfg, desc=f"{ev.desc} judge")
    for r, j in zip(ev.records, judged):
        r.update({"judge_score": j["reward"], "judgments": j["judgments"], "judgment_scores": j["judgment_scores"]})
    valid = [s for j in judged for s in j["judgment_scores"] if s is not None]
    return {"judge_agreement": judge_agreement([r["judge_score"] for r in ev.records], [r["score"] for r in ev.records]),
            "judge_scored_share": sum(j["reward"] is not None for j in judged) / max(len(judged), 1),
            "judge_dropped_unparseable": stats["dropped_unparseable"], **score_stats(valid, ev.judge_cfg, prefix="judge_")}


MEASURES = {"accuracy": accuracy, "lenient": lenient, "constraints": constraints, "maj": majority, "refine": refine,
            "win_rate": win_rate, "judge_quality": judge_quality}
