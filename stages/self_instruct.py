"""Self-instruct: the model writes the next iteration's prompts (Self-Rewarding §2.4, after Wang et al. 2023).

Each request shows a model ``shots`` example instructions — drawn from the seed pool, plus up to
``generated_shots`` instructions the model wrote in the previous iteration (paper: 6 seed + 2 generated) —
and asks it for one new instruction. ``num_candidates`` requests are sampled (paper: temperature 0.6,
top-p 0.9); each reply is cleaned (first line, numbering and quotes removed) and filtered, in this order:

* ``empty`` — nothing left after cleaning;
* ``length`` — fewer than ``min_words`` or more than ``max_words`` words;
* ``banned`` — contains a banned keyword (things a text model cannot do: images, files, audio...);
* ``similar_seed`` — ROUGE-L F1 with a seed-pool instruction (or a shown example) above ``max_similarity``;
* ``similar_kept`` — ROUGE-L F1 with an instruction already kept in this iteration above ``max_similarity``.

The first ``num_prompts`` survivors are the iteration's prompts. How many were written, kept, and dropped
by each filter is recorded. ROUGE-L is the longest-common-subsequence F1 over lowercased word tokens, as
in self-instruct (their ``rouge_score`` package is an sdist pulling nltk and absl for this one function).

The seed pool is a small built-in list of varied instructions written for this project (some with
constraints of the kind the evaluation checks), or your own file: .txt (one instruction per line) or
.jsonl/.json (field ``instruction``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from stages.generate import Engine, generate

SEED_INSTRUCTIONS = [
    "Explain the difference between weather and climate.",
    "Write a friendly email asking a colleague to review a report by Friday.",
    "Give three tips for staying focused while working from home.",
    "Describe how to boil an egg. Use exactly 4 bullet points.",
    "Summarize the story of Little Red Riding Hood in at most 40 words.",
    "Explain what photosynthesis is to a ten-year-old.",
    "Write a short poem about autumn leaves.",
    "What are the pros and cons of living in a big city?",
    "Suggest a name for a new bakery and explain your choice.",
    "Explain why the ocean is salty. Do not use the word \"salt\".",
    "Write a two-sentence horror story.",
    "Give step-by-step instructions for changing a flat bicycle tyre.",
    "Describe the smell of fresh bread. Write your entire answer in lowercase letters.",
    "What should someone pack for a weekend camping trip? Answer with a bulleted list.",
    "Explain how a refrigerator keeps food cold.",
    "Write a polite message declining an invitation to a party.",
    "Compare cats and dogs as pets in exactly 2 paragraphs separated by a blank line.",
    "Give advice to a student who is nervous about a presentation.",
    "Explain what inflation means, with a simple example.",
    "Write a haiku about the first snow of the year.",
    "List five healthy snacks for children and say why each is healthy.",
    "Describe a sunset over the sea. Wrap your entire answer in double quotation marks.",
    "Explain the rules of rock, paper, scissors.",
    "Write a thank-you note to a teacher. End your answer with the exact phrase \"With gratitude.\"",
    "Why do leaves change colour in autumn?",
    "Give a short motivational message for someone starting a new job.",
    "Explain how to make a paper airplane.",
    "Describe your favourite season and why you like it. Do not use any commas.",
    "What is the difference between a virus and a bacterium?",
    "Write a short product description for a reusable water bottle. Include the word \"durable\".",
    "Explain why it is important to drink water every day.",
    "Give a recipe for a simple tomato salad.",
    "Write a title and a short opening paragraph for a story about a robot who learns to paint. "
    "Put the title in double angle brackets, like <<title>>.",
    "Explain what a leap year is.",
    "Describe three ways to reduce plastic waste at home.",
    "Write a short dialogue between a customer and a shop assistant.",
]

DEFAULT_BANNED = ["image", "images", "picture", "pictures", "photo", "graph", "graphs", "file", "files", "map",
                  "maps", "draw", "plot", "video", "audio", "music", "flowchart", "diagram", "link", "url",
                  "website"]


@dataclass
class PromptsConfig:
    """Where an iteration's prompts come from. source: task (the task's training split) | self_instruct."""

    source: str = "task"
    num_prompts: int = 16  # prompts kept per iteration (self_instruct)
    num_candidates: int = 48  # instructions written before filtering
    shots: int = 8  # examples per request (paper: 8)
    generated_shots: int = 2  # of which written by the model in the previous iteration (paper: 2)
    seed_pool: str = "builtin"  # builtin | a .txt/.jsonl/.json file of instructions
    model: str = "current"  # who writes: current (M(t)) | initial (M0) | a path | py:module:function
    template: str = "{examples}"  # the request; {examples} is replaced by the numbered examples
    temperature: float = 0.6
    top_p: float = 0.9
    max_new_tokens: int = 64
    batch_size: int = 16
    min_words: int = 3
    max_words: int = 60
    banned_keywords: list[str] = field(default_factory=lambda: list(DEFAULT_BANNED))
    max_similarity: float = 0.7  # ROUGE-L F1 above this is a near-duplicate (self-instruct: 0.7)
    seed: int = 0
    engine: Engine = field(default_factory=Engine)  # the run's engine (set by the pipeline)

    def __post_init__(self) -> None:
        if self.source not in ("task", "self_instruct"):
            raise ValueError(f"prompts.source must be 'task' or 'self_instruct', got {self.source!r}")
        if self.source == "self_instruct" and "{examples}" not in self.template:
            raise ValueError("prompts.template must contain {examples}")
        if self.num_prompts < 1 or self.num_candidates < self.num_prompts:
            raise ValueError("prompts.num_prompts must be >= 1 and prompts.num_candidates >= num_prompts")
        if not 0 <= self.generated_shots <= self.shots or self.shots < 1:
            raise ValueError("prompts.shots must be >= 1 and 0 <= prompts.generated_shots <= shots")
        if not 0 < self.max_similarity <= 1:
            raise ValueError(f"prompts.max_similarity must be in (0, 1], got {self.max_similarity}")
        if self.min_words < 1 or self.max_words < self.min_words:
            raise ValueError("prompts.min_words must be >= 1 and <= prompts.max_words")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"prompts.temperature must be >= 0 and prompts.top_p in (0, 1], got {self.temperature}, "
                             f"{self.top_p}")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("prompts.max_new_tokens and prompts.batch_size must be >= 1")


def load_seed_pool(source: str) -> list[str]:
    if source == "builtin":
        return list(SEED_INSTRUCTIONS)
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"prompts.seed_pool: file not found: {path}")
    if path.suffix not in (".txt", ".jsonl", ".json"):
        raise ValueError(f"prompts.seed_pool: {path} must be .txt, .jsonl or .json")
    from stages.tasks import TaskInputError
    from stages.tasks.files import read_rows, read_text

    try:  # a malformed file: its name and line
        rows = [{"instruction": line} for line in read_text(path).splitlines()] if path.suffix == ".txt" \
            else read_rows(str(path))
    except TaskInputError as e:
        raise ValueError(f"prompts.seed_pool: {e}") from None
    if not all("instruction" in r for r in rows):
        raise ValueError(f"prompts.seed_pool: every row of {path} needs an 'instruction' field")
    pool = [str(r["instruction"]).strip() for r in rows]
    pool = [p for p in dict.fromkeys(pool) if p]
    if len(pool) < 2:
        raise ValueError(f"prompts.seed_pool: {path} needs at least 2 instructions")
    return pool


_TOKEN = re.compile(r"[a-z0-9]+")


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F1 of two texts over lowercased alphanumeric word tokens."""
    x, y = _TOKEN.findall(a.lower()), _TOKEN.findall(b.lower())
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for xi in x:
        cur = [0]
        for j, yj in enumerate(y):
            cur.append(prev[j] + 1 if xi == yj else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(x), lcs / len(y)
    return 2 * p * r / (p + r)


def clean(reply: str) -> str:
    """The instruction in a reply: its first non-empty line, without numbering, labels or quotes."""
    line = next((ln.strip() for ln in reply.splitlines() if ln.strip()), "")
    line = re.sub(r"(?i)^(?:\*\*)?\s*(?:new\s+)?(?:task|instruction)\s*\d*\s*[:.)-]\s*(?:\*\*)?\s*", "", line)
    line = re.sub(r"^\s*(?:\d+[.)]|[-*•])\s+", "", line)
    return line.strip().strip("\"'“”").strip()


def filter_instructions(candidates: list[str], pool: list[str], cfg: PromptsConfig) -> tuple[list[str], dict]:
    """Clean and filter candidates in order; returns (kept, counts per filter)."""
    banned = [re.compile(rf"(?i)\b{re.escape(w)}\b") for w in cfg.banned_keywords]
    counts = {"written": len(candidates), "empty": 0, "length": 0, "banned": 0, "similar_seed": 0,
              "similar_kept": 0, "over_target": 0}
    kept: list[str] = []
    for raw in candidates:
        text = clean(raw)
        n = len(text.split())
        if not text:
            counts["empty"] += 1
        elif not cfg.min_words <= n <= cfg.max_words:
            counts["length"] += 1
        elif any(b.search(text) for b in banned):
            counts["banned"] += 1
        elif any(rouge_l(text, s) > cfg.max_similarity for s in pool):
            counts["similar_seed"] += 1
        elif any(rouge_l(text, k) > cfg.max_similarity for k in kept):
            counts["similar_kept"] += 1
        elif len(kept) >= cfg.num_prompts:
            counts["over_target"] += 1
        else:
            kept.append(text)
    counts["kept"] = len(kept)
    return kept, counts


def self_instruct(model_path: str, cfg: PromptsConfig, iteration: int, previous: list[str] = (),
                  desc: str = "self-instruct") -> tuple[list[dict], dict]:
    """Write, clean and filter new instructions. `previous`: instructions the model wrote in the previous
    iteration (source of the generated shots). Returns prompt records (prompt_id, messages, question) and
    the per-filter counts."""
    pool = load_seed_pool(cfg.seed_pool)
    rng = random.Random(f"{cfg.seed}:self-instruct:{iteration}")
    requests, shown = [], []
    for i in range(cfg.num_candidates):
        n_gen = min(cfg.generated_shots, len(previous))
        shots = rng.sample(pool, min(cfg.shots - n_gen, len(pool))) + rng.sample(list(previous), n_gen)
        rng.shuffle(shots)
        shown += shots
        examples = "\n".join(f"Task {k}: {s}" for k, s in enumerate(shots, 1))
        requests.append({"prompt_id": f"req-{i:04d}",
                         "messages": [{"role": "user", "content": cfg.template.replace("{examples}", examples)}]})
    gen = cfg.engine.sampling(num_samples=1, temperature=cfg.temperature, top_p=cfg.top_p,
                              max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                              seed=cfg.seed + 1000 * iteration)
    outs, gen_stats = generate(model_path, requests, gen, desc=desc)
    kept, counts = filter_instructions([o["completion"] for o in outs], list(dict.fromkeys(pool + shown)), cfg)
    records = [{"prompt_id": f"si-{iteration:02d}-{k:04d}", "messages": [{"role": "user", "content": q}],
                "question": q} for k, q in enumerate(kept)]
    return records, {**counts, "writer_fingerprint": gen_stats["model_fingerprint"]}
