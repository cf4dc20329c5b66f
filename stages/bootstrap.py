"""Bootstrap data: the optional M0 -> M1 fine-tuning of Self-Rewarding (Yuan et al. 2024, §2.2), which trains
the starting model on seed instruction-following (IFT) and seed judging (EFT) examples so that it can act
as a judge at all.

* IFT: the built-in seed instructions with responses written for this project (`SEED_RESPONSES`).
* EFT: judge prompts (the configured judge template, so the model learns exactly the format it will be
  asked in) over seed responses and degraded versions of them, each answered with a short justification
  and the "Score: N" line. The paper used human-ranked OpenAssistant judgments; here the scores come from
  how each response was made: the written response (5 points), the same with an unrelated sentence
  appended (3: extraneous content), only its first sentence (2: partial), another instruction's response
  (0: irrelevant) — a spread of scores, so the judge is not taught that everything deserves the top score.
* Pairwise (when a pairwise template is given, for the evaluation's win rate): the written response
  against one degraded version, in both orders, answered with "Winner: A" or "Winner: B" — the judge
  learns the verdict format without learning a favourite position.

* Thoughts (TPO, when a thought prompt is configured): the IFT examples are asked with the thought prompt
  and answered in its format — a short thought that restates the request and its requirements, then the
  response after the response marker. A 135M model writes the markers in 0 of 24 outputs without this
  (measured), and an output that does not parse can never be chosen.

Deviation: the paper's seed data are thousands of human examples; this is a few dozen, enough to teach a
small model the judging format, not to make it a good judge.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from stages.compare import fill_pairwise
from stages.judge import fill
from stages.thoughts import ThoughtConfig, wrap

SEED_RESPONSES = {
    "Explain the difference between weather and climate.":
        "Weather is what the air is doing at one place and time: today's rain, wind or sunshine. Climate is the "
        "pattern of weather over many years, such as how warm a region's summers usually are. Weather can change "
        "within an hour, while climate changes over decades.",
    "Give three tips for staying focused while working from home.":
        "1. Keep a separate work area and use it only for work.\n2. Plan your day in short blocks with a clear "
        "task for each.\n3. Put your phone out of reach and check messages only during breaks.",
    "Describe how to boil an egg. Use exactly 4 bullet points.":
        "- Place the egg in a small pot and cover it with cold water.\n- Bring the water to a boil over medium "
        "heat.\n- Simmer for 7 minutes for a firm yolk, or 5 minutes for a soft one.\n- Move the egg to cold "
        "water for a minute, then peel it.",
    "Summarize the story of Little Red Riding Hood in at most 40 words.":
        "A girl takes food to her sick grandmother. A wolf learns her plan, eats the grandmother and waits in "
        "her bed. A passing woodcutter rescues them both, and the girl learns not to talk to strangers.",
    "Explain what photosynthesis is to a ten-year-old.":
        "Plants make their own food. Their leaves catch sunlight and use its energy to turn water from the soil "
        "and air into sugar, which helps the plant grow. While they do this, they give off oxygen, the gas we "
        "breathe.",
    "Explain why the ocean is salty. Do not use the word \"salt\".":
        "Rain slowly wears down rocks on land and carries tiny amounts of minerals into rivers. Rivers bring "
        "these minerals to the sea. When sea water evaporates, the minerals stay behind, so over millions of "
        "years they have built up and made the water taste briny.",
    "Describe the smell of fresh bread. Write your entire answer in lowercase letters.":
        "fresh bread smells warm and slightly sweet, with a toasty note from the golden crust. there is a soft, "
        "yeasty smell underneath that fills the whole kitchen and makes people hungry before they even see "
        "the loaf.",
    "Explain how a refrigerator keeps food cold.":
        "A refrigerator moves heat from the inside to the outside. A liquid called a refrigerant flows through "
        "pipes inside, evaporates and absorbs heat. A compressor then squeezes the gas, and it releases that "
        "heat through coils at the back before flowing inside again.",
    "Write a polite message declining an invitation to a party.":
        "Thank you so much for inviting me to your party. Unfortunately I already have plans that evening, so I "
        "won't be able to come. I hope you have a wonderful time, and I'd love to catch up soon.",
    "Compare cats and dogs as pets in exactly 2 paragraphs separated by a blank line.":
        "Cats are independent and quiet. They need less daily attention, use a litter box and are happy in "
        "small homes, which suits busy owners.\n\nDogs are social and active. They need walks, training and "
        "company, but they reward that effort with strong loyalty and are great partners for outdoor life.",
    "Explain what inflation means, with a simple example.":
        "Inflation is when prices rise over time, so the same money buys less. For example, if a loaf of bread "
        "costs 2 dollars this year and 2.20 next year, prices have risen by 10 percent, and 2 dollars no longer "
        "buys a whole loaf.",
    "Describe a sunset over the sea. Wrap your entire answer in double quotation marks.":
        "\"The sun sinks slowly toward the horizon and the sky turns orange, then pink and purple. Its light "
        "spreads across the water in a shining path, and the waves glow gold until the last sliver of sun "
        "disappears.\"",
    "Write a thank-you note to a teacher. End your answer with the exact phrase \"With gratitude.\"":
        "Dear Ms. Lee, thank you for your patience and encouragement this year. Your lessons made science "
        "exciting, and you helped me believe I could solve hard problems. I will remember your class for a long "
        "time. With gratitude.",
    "Describe your favourite season and why you like it. Do not use any commas.":
        "My favourite season is spring. The days grow longer and the air feels fresh after the cold winter. "
        "Trees fill with new leaves and flowers open everywhere. I like it because everything seems to start "
        "again.",
    "Write a short product description for a reusable water bottle. Include the word \"durable\".":
        "Stay refreshed all day with this durable steel water bottle. It keeps drinks cold for 24 hours, fits "
        "in most cup holders and has a leak-proof lid, so you can carry it in your bag without worry.",
    "Explain what a leap year is.":
        "A leap year has 366 days instead of 365, with an extra day added on February 29. It happens about "
        "every four years because the Earth takes roughly 365 and a quarter days to go around the Sun, and the "
        "extra day keeps the calendar in line with the seasons.",
}

_WHY = {
    5: "The response is relevant, answers the question completely and usefully, is clear and direct, and "
       "follows every instruction in the question without extra content.",
    3: "The response is relevant and answers the basic elements of the question, but it includes a sentence "
       "that has nothing to do with the question, so it is not well organised or tailored.",
    2: "The response is relevant and addresses part of the question, but it stops early and leaves the basic "
       "elements unanswered.",
    0: "The response does not address the question at all; it is about a different topic.",
}


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s+", text.strip())[0]


def _seed_thought(question: str) -> str:
    """A short thought for a seed instruction: the request and the requirements it states."""
    sentences = re.split(r"(?<=[.?!])\s+", question.strip())
    ask, rules = sentences[0], " ".join(sentences[1:])
    need = f"It also says: {rules} I must follow that exactly." if rules else "It sets no format, so a short, clear answer is best."
    return f"The user asks: {ask} {need} I will answer directly, with nothing unrelated, and check the answer against the request."


def bootstrap_examples(judge_template: str, ift: bool = True, eft: bool = True, seed: int = 0,
                       pairwise_template: str = "", thought_cfg: ThoughtConfig | None = None) -> list[dict]:
    """SFT records (prompt / completion, conversational) for the bootstrap fine-tuning."""
    rng = random.Random(f"{seed}:bootstrap")
    items = list(SEED_RESPONSES.items())
    thinking = thought_cfg is not None and thought_cfg.enabled
    out = []
    if ift:
        for i, (q, a) in enumerate(items):
            prompt = [{"role": "user", "content": q}]
            if thinking:
                prompt = wrap([{"messages": prompt}], thought_cfg)[0]["messages"]
                a = f"{thought_cfg.thought_marker}\n{_seed_thought(q)}\n\n{thought_cfg.response_marker}\n{a}"
            out.append({"prompt_id": f"ift-{i:03d}", "kind": "ift", "score": None,
                        "prompt": prompt, "completion": [{"role": "assistant", "content": a}]})
    if eft:
        for i, (q, a) in enumerate(items):
            other = items[(i + 1 + rng.randrange(len(items) - 1)) % len(items)][1]
            variants = {5: a, 3: a + " " + _first_sentence(other), 2: _first_sentence(a), 0: other}
            for score, response in variants.items() if judge_template else ():  # a pointwise judge's template
                out.append({"prompt_id": f"eft-{i:03d}-{score}", "kind": "eft", "score": float(score),
                            "prompt": [{"role": "user", "content": fill(judge_template, q, response)}],
                            "completion": [{"role": "assistant", "content": f"{_WHY[score]}\nScore: {score}"}]})
            if pairwise_template:
                worse = rng.choice([3, 2, 0])
                for first_is_good in (True, False):
                    shown = (a, variants[worse]) if first_is_good else (variants[worse], a)
                    winner, loser = ("A", "B") if first_is_good else ("B", "A")
                    text = fill_pairwise(pairwise_template, q, *shown)
                    why = f"Response {winner} carries out the instruction; response {loser} " + {
                        3: "adds content unrelated to it.", 2: "stops before answering it.",
                        0: "is about a different topic."}[worse]
                    out.append({"prompt_id": f"pair-{i:03d}-{winner}", "kind": "pairwise", "score": None,
                                "prompt": [{"role": "user", "content": text}],
                                "completion": [{"role": "assistant", "content": f"{why}\nWinner: {winner}"}]})
    rng.shuffle(out)
    return out


@dataclass
class BootstrapConfig:
    ift: bool = True  # seed instruction-following examples
    eft: bool = True  # seed judging examples (in the pointwise judge's template and/or the pairwise template)
    seed: int = 0
    train: object = None  # a stages.train.TrainConfig (trainer sft)
    kind = "seed"  # (a class attribute: not part of the stage's identity; stages.priming.PrimingConfig: "priming")
