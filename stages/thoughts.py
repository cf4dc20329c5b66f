"""Thoughts: TPO's thought prompts and the split of an output into thought and response (Thinking LLMs,
Wu et al. 2024, §2).

A thought prompt (``template``, with ``{instruction}``) asks the model to write its internal thoughts first,
after a ``thought_marker`` line, and then its final response, after a ``response_marker`` line. The
templates live in conf/thought/*.yaml (a generic variant and a specific one that asks for a draft and its
evaluation), so a run's saved config records what was asked; ``thought: none`` answers directly (the
baseline).

Splitting (`split`), markers matched at the start of a line, case-insensitively, optionally decorated with
markdown (``## Response``, ``**Response:**``; a marker's colon may be left out only when nothing follows it
on the line, so "Response to the user" is not a marker):

* the output is cut at the **last** response-marker line: what follows is the response, what precedes it
  (without a leading thought-marker line) is the thought. A draft response inside the thoughts therefore
  stays in the thoughts as long as the final response comes last;
* no response-marker line, an empty thought or an empty response: the output does not parse. It is kept
  (flagged ``parsed: false`` with the reason in ``parse_error``), is never judged, and can enter pairs only
  as the rejected side (pairs.max_unparsed_share). The evaluation reads an unparsed output whole as its
  response (a user would see all of it).

    from stages.thoughts import ThoughtConfig, split
    split("Thoughts:\\nthe user wants...\\nResponse:\\nHello!", ThoughtConfig(template="... {instruction}"))
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class ThoughtConfig:
    template: str = ""  # the thought prompt with {instruction}; "" = no thoughts (answer directly)
    thought_marker: str = "Thoughts:"  # line that opens the thoughts (optional in the output)
    response_marker: str = "Response:"  # line that opens the final response (required in the output)
    name: str = "none"  # the variant's name, for tables and logs

    def __post_init__(self) -> None:
        if self.template and "{instruction}" not in self.template:
            raise ValueError("thought.template must contain {instruction}")
        if self.template and not self.response_marker.strip():
            raise ValueError("thought.response_marker must be non-empty")

    @property
    def enabled(self) -> bool:
        return bool(self.template)


def _marker_line(marker: str) -> re.Pattern:
    """A line that starts with `marker` (any case; a marker's trailing colon may be left out when the line ends there),
    optionally decorated with #, * or _ around it: "Response:", "## Response", "**Response:**"."""
    marker = marker.strip()
    if not marker.endswith(":"):  # a tag such as <answer>: matched as written
        return re.compile(r"(?im)^[ \t#*_>]*" + re.escape(marker) + r"[ \t*_]*")
    base = re.escape(marker.rstrip(":").strip())
    return re.compile(r"(?im)^[ \t#*_>]*" + base + r"[ \t*_]*(?::|$)[ \t*_]*")


def split(text: str, cfg: ThoughtConfig) -> dict:
    """{thought, response, parsed, parse_error} of one output. Without thoughts configured, everything is
    the response."""
    text = text or ""
    if not cfg.enabled:
        return {"thought": "", "response": text.strip(), "parsed": True, "parse_error": ""}
    found = list(_marker_line(cfg.response_marker).finditer(text))
    if not found:
        return {"thought": text.strip(), "response": "", "parsed": False, "parse_error": "no response marker"}
    last = found[-1]
    thought, response = text[: last.start()], text[last.end():].strip()
    if cfg.thought_marker.strip():
        opening = _marker_line(cfg.thought_marker).match(thought.lstrip())
        thought = thought.lstrip()[opening.end():] if opening else thought
    thought = thought.strip()
    error = "empty thought" if not thought else "empty response" if not response else ""
    return {"thought": thought, "response": response, "parsed": not error, "parse_error": error}


def judged_text(c: dict) -> str:
    """What a judge or checker reads of a candidate: its response after the thoughts (a split record), or the
    whole completion."""
    return c["response"] if "parsed" in c and c.get("response") is not None else c["completion"]


def wrap(prompts: list[dict], cfg: ThoughtConfig) -> list[dict]:
    """Prompt records whose last user message is put into the thought prompt (unchanged without thoughts).
    The instruction the judge sees stays in the original records."""
    if not cfg.enabled:
        return prompts
    out = []
    for p in prompts:
        msgs = [dict(m) for m in p["messages"]]
        last = max(i for i, m in enumerate(msgs) if m["role"] == "user")
        msgs[last]["content"] = cfg.template.replace("{instruction}", msgs[last]["content"])
        out.append({**p, "messages": msgs})
    return out


def split_records(records: list[dict], cfg: ThoughtConfig) -> tuple[list[dict], dict]:
    """Generation records with thought / response / parsed / parse_error added, and per-set statistics:
    parse-failure rate and mean thought / response lengths (characters, parsed outputs only)."""
    out = [{**r, **split(r["completion"], cfg)} for r in records]
    ok = [r for r in out if r["parsed"]]
    n = max(len(out), 1)
    stats = {"parse_failure_rate": (len(out) - len(ok)) / n,
             "thought_chars": sum(len(r["thought"]) for r in ok) / len(ok) if ok else None,
             "response_chars": sum(len(r["response"]) for r in ok) / len(ok) if ok else None}
    for reason in ("no response marker", "empty thought", "empty response"):
        stats[f"parse_{reason.replace(' ', '_')}"] = sum(r["parse_error"] == reason for r in out)
    return out, stats
