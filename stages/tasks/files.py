"""Your own verifiable task (``task=file``): a local .jsonl/.json/.parquet/.csv file or any
`datasets.load_dataset` source, with configurable field names. A missing file, a field that no row has, or
an empty split is an error naming the file and field; individual rows with an empty question/answer are
skipped and counted (`LoadedTask.skipped`). A malformed local file (not UTF-8, a broken JSON line, an array in a
.jsonl, a ragged CSV) is one line naming the file and line. GSM8K's format is understood: an answer field
holding a rationale with calculator annotations that ends in "#### N" gives the gold answer N and the gold
solution (the rationale without annotations, ending in "Answer: N"). Checked like the arithmetic task: the final answer against the
gold answer (stages/verify.py).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from stages.tasks import LoadedTask, Problem, TaskConfig, TaskInputError
from stages.verify import check_answer


LOCAL = (".jsonl", ".json", ".parquet", ".csv")


def read_text(path: Path) -> str:
    """A local text file (UTF-8, a byte-order mark allowed); otherwise TaskInputError naming its line."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise TaskInputError(f"{path}:{line}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})") from None


def read_rows(source: str) -> list[dict]:
    """The rows of a local .jsonl/.json/.parquet/.csv file, read here rather than by `datasets` so that a
    malformed file is one line naming the file, the line or row, and what is wrong (TaskInputError)."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"task.source: file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as e:
            raise TaskInputError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
    text = read_text(path)
    if suffix == ".csv":
        import csv
        import io

        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = []
        try:
            for row in reader:
                if None in row:
                    raise TaskInputError(f"{path}:{reader.line_num}: more values than the header's "
                                         f"{len(reader.fieldnames or [])} columns")
                rows.append(row)
        except csv.Error as e:
            raise TaskInputError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
        return rows
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise TaskInputError(f"{path}:{e.lineno}: invalid JSON ({e.msg}, column {e.colno})") from None
        if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
            data = next(iter(data.values()))  # {"data": [...]}
        if not isinstance(data, list):
            raise TaskInputError(f"{path}: expected a JSON array of objects, got a {type(data).__name__}")
        for i, row in enumerate(data):
            if not isinstance(row, dict):
                raise TaskInputError(f"{path}: element {i} of the array is a {_kind(row)}, not an object")
        return data
    rows = []
    for n, line in enumerate(text.splitlines(), 1):  # .jsonl: one JSON object per line
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            hint = ""
            if n == 1 and line.lstrip().startswith("["):
                hint = " — a JSON array? name the file .json, or write one object per line"
            elif "," in line and not line.lstrip().startswith("{"):
                hint = " — CSV? name the file .csv"
            raise TaskInputError(f"{path}:{n}: not a JSON object ({e.msg}, column {e.colno}){hint}") from None
        if not isinstance(row, dict):
            raise TaskInputError(f"{path}:{n}: expected a JSON object per line, got {_kind(row)}")
        rows.append(row)
    return rows


def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _read_rows(cfg: TaskConfig, split: str) -> list[dict]:
    if Path(cfg.source).suffix.lower() in LOCAL:
        return read_rows(cfg.source)
    if Path(cfg.source).expanduser().is_file():  # datasets would say it "couldn't find any data file" there
        raise TaskInputError(f"task.source: {cfg.source}: not a {', '.join(LOCAL[:-1])} or {LOCAL[-1]} file")
    import datasets

    try:
        return datasets.load_dataset(cfg.source, cfg.subset, split=split).to_list()
    except Exception as e:
        raise TaskInputError(f"task.source: could not load split {split!r} of dataset {cfg.source!r}: "
                             f"{type(e).__name__}: {e}") from None


_CALCULATOR = re.compile(r"<<[^<>]*>>")


def gsm8k_answer(answer: str) -> tuple[str, str] | None:
    """GSM8K's answer field — a rationale with calculator annotations (<<48/2=24>>) ending in "#### N" — as
    (N, the rationale without annotations ending in the prompt's "Answer: N" line); None for a plain answer."""
    if answer.count("####") != 1:
        return None
    before, after = answer.split("####")
    final = after.strip().replace(",", "")
    if not final or "\n" in final:
        return None
    steps = _CALCULATOR.sub("", before).strip()
    return final, (f"{steps}\nAnswer: {final}" if steps else f"Answer: {final}")


def _rows_to_problems(rows: list[dict], cfg: TaskConfig, where: str, skipped: dict[str, int]) -> list[Problem]:
    if not rows:
        raise TaskInputError(f"{where}: the dataset is empty")
    for fld in (cfg.question_field, cfg.answer_field, cfg.solution_field, cfg.id_field):
        if fld is not None and not any(fld in r for r in rows):
            have = sorted(rows[0].keys())
            raise TaskInputError(f"{where}: no row has the field {fld!r} (fields: {have}); "
                           f"set task.question_field / task.answer_field / task.solution_field / task.id_field")
    out, ids, questions = [], set(), set()
    for r in rows:
        q, a = r.get(cfg.question_field), r.get(cfg.answer_field)
        if not isinstance(q, str) or not q.strip():
            skipped["empty_question"] = skipped.get("empty_question", 0) + 1
            continue
        if a is None or (isinstance(a, str) and not a.strip()) or isinstance(a, (list, dict)):
            skipped["bad_answer"] = skipped.get("bad_answer", 0) + 1
            continue
        sol = r.get(cfg.solution_field) if cfg.solution_field else None
        sol = sol if isinstance(sol, str) and sol.strip() else None
        gsm8k = gsm8k_answer(a) if isinstance(a, str) else None
        if gsm8k:
            a, sol = gsm8k[0], sol or gsm8k[1]
        pid = str(r[cfg.id_field]) if cfg.id_field and r.get(cfg.id_field) is not None else \
            hashlib.sha1(q.encode()).hexdigest()[:12]
        if pid in ids or q.strip() in questions:
            skipped["duplicate"] = skipped.get("duplicate", 0) + 1
            continue
        ids.add(pid)
        questions.add(q.strip())
        out.append(Problem(id=pid, question=q.strip(), answer=str(a).strip(), solution=sol))
    if not out:
        raise TaskInputError(f"{where}: no usable rows ({skipped})")
    return out


def load(cfg: TaskConfig) -> LoadedTask:
    """Problems from a local file or a `datasets` source. A file holds one split: the held-out split is
    carved out of it (test_size rows, seeded shuffle) unless test_split names another source."""
    skipped: dict[str, int] = {}
    rows = _read_rows(cfg, cfg.train_split)
    problems = _rows_to_problems(rows, cfg, f"task.source={cfg.source} (split {cfg.train_split})", skipped)
    local_file = Path(cfg.source).suffix.lower() in LOCAL
    if cfg.test_split is not None and not local_file:
        test = _rows_to_problems(_read_rows(cfg, cfg.test_split), cfg,
                                 f"task.source={cfg.source} (split {cfg.test_split})", skipped)
        test_q = {p.question for p in test}
        train = [p for p in problems if p.question not in test_q]
        if len(train) < len(problems):
            skipped["in_test_split"] = len(problems) - len(train)
    else:
        if len(problems) < 2:
            raise TaskInputError(f"task.source={cfg.source}: need at least 2 usable rows to split train/test, got "
                                 f"{len(problems)}" + (f" (skipped: {skipped})" if skipped else ""))
        order = list(problems)
        random.Random(cfg.seed).shuffle(order)
        n_test = min(cfg.test_size, len(order) // 2)
        test, train = order[:n_test], order[n_test:]
    return LoadedTask(name=cfg.name, train=train, test=test, skipped=skipped, checker=check_answer)
