"""Your own verifiable task (``task=file``): a local .jsonl/.json/.parquet/.csv file or any
`datasets.load_dataset` source, with configurable field names. A missing file, a field that no row has, or
an empty split is an error naming the file and field; individual rows with an empty question/answer are
skipped and counted (`LoadedTask.skipped`). Checked like the arithmetic task: the final answer against the
gold answer (stages/verify.py).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from stages.tasks import LoadedTask, Problem, TaskConfig
from stages.verify import check_answer


def _read_rows(cfg: TaskConfig, split: str) -> list[dict]:
    import datasets

    src = cfg.source
    path = Path(src).expanduser()
    suffix = "".join(path.suffixes[-1:]).lower()
    local_file = suffix in (".jsonl", ".json", ".parquet", ".csv")
    if local_file:
        if not path.is_file():
            raise FileNotFoundError(f"task.source: file not found: {path}")
        builder = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}[suffix]
        try:
            ds = datasets.load_dataset(builder, data_files={"train": str(path)}, split="train")
        except Exception as e:  # malformed file: name it
            raise ValueError(f"task.source: could not read {path}: {type(e).__name__}: {e}") from e
    else:
        try:
            ds = datasets.load_dataset(src, cfg.subset, split=split)
        except Exception as e:
            raise ValueError(f"task.source: could not load split {split!r} of dataset {src!r}: "
                             f"{type(e).__name__}: {e}") from e
    return ds.to_list()


def _rows_to_problems(rows: list[dict], cfg: TaskConfig, where: str, skipped: dict[str, int]) -> list[Problem]:
    if not rows:
        raise ValueError(f"{where}: the dataset is empty")
    for fld in (cfg.question_field, cfg.answer_field, cfg.solution_field, cfg.id_field):
        if fld is not None and not any(fld in r for r in rows):
            have = sorted(rows[0].keys())
            raise KeyError(f"{where}: no row has the field {fld!r} (fields: {have}); "
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
        pid = str(r[cfg.id_field]) if cfg.id_field and r.get(cfg.id_field) is not None else \
            hashlib.sha1(q.encode()).hexdigest()[:12]
        if pid in ids or q.strip() in questions:
            skipped["duplicate"] = skipped.get("duplicate", 0) + 1
            continue
        ids.add(pid)
        questions.add(q.strip())
        out.append(Problem(id=pid, question=q.strip(), answer=str(a).strip(), solution=sol))
    if not out:
        raise ValueError(f"{where}: no usable rows ({skipped})")
    return out


def load(cfg: TaskConfig) -> LoadedTask:
    """Problems from a local file or a `datasets` source. A file holds one split: the held-out split is
    carved out of it (test_size rows, seeded shuffle) unless test_split names another source."""
    skipped: dict[str, int] = {}
    rows = _read_rows(cfg, cfg.train_split)
    problems = _rows_to_problems(rows, cfg, f"task.source={cfg.source} (split {cfg.train_split})", skipped)
    local_file = Path(cfg.source).suffix.lower() in (".jsonl", ".json", ".parquet", ".csv")
    if cfg.test_split is not None and not local_file:
        test = _rows_to_problems(_read_rows(cfg, cfg.test_split), cfg,
                                 f"task.source={cfg.source} (split {cfg.test_split})", skipped)
        test_q = {p.question for p in test}
        train = [p for p in problems if p.question not in test_q]
        if len(train) < len(problems):
            skipped["in_test_split"] = len(problems) - len(train)
    else:
        if len(problems) < 2:
            raise ValueError(f"task.source={cfg.source}: need at least 2 rows to split train/test")
        order = list(problems)
        random.Random(cfg.seed).shuffle(order)
        n_test = min(cfg.test_size, len(order) // 2)
        test, train = order[:n_test], order[n_test:]
    return LoadedTask(name=cfg.name, train=train, test=test, skipped=skipped, checker=check_answer)
