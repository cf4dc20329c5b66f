"""Unit tests for stages/tasks/ (arithmetic and file tasks): the built-in arithmetic task, prompt selection and loading local files."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest

from stages.tasks import LoadedTask, Problem, TaskConfig, TaskInputError, load_task, select_prompts
from stages.tasks.arithmetic import KINDS, arithmetic_problems
from stages.tasks.files import load as load_problems
from stages.verify import CORRECT, INCORRECT, UNPARSEABLE, VerifyConfig


@pytest.fixture(scope="module")
def default_task() -> LoadedTask:
    return load_task(TaskConfig())  # 2000 train + 200 test, all difficulties: ~0.05 s


# --------------------------------------------------------------------------- built-in arithmetic task


def test_arithmetic_deterministic_given_seed():
    a = arithmetic_problems(60, seed=5, split="train")
    assert a == arithmetic_problems(60, seed=5, split="train")
    assert a != arithmetic_problems(60, seed=6, split="train")
    assert [p.question for p in a] != [p.question for p in arithmetic_problems(60, seed=5, split="test")]
    # a longer draw starts with the shorter one
    assert arithmetic_problems(90, seed=5, split="train")[:60] == a
    assert load_task(TaskConfig(num_train=50, num_test=20)) == load_task(TaskConfig(num_train=50, num_test=20))
    t1, t2 = load_task(TaskConfig(seed=1)), load_task(TaskConfig(seed=2))
    assert [p.question for p in t1.test] != [p.question for p in t2.test]


def test_load_task_sizes_and_disjoint_splits(default_task):
    cfg = TaskConfig()
    assert len(default_task.train) == cfg.num_train and len(default_task.test) == cfg.num_test
    train_q = {p.question for p in default_task.train}
    test_q = {p.question for p in default_task.test}
    assert len(train_q) == len(default_task.train) and len(test_q) == len(default_task.test)  # no repeats
    assert not train_q & test_q
    ids = [p.id for p in default_task.train + default_task.test]
    assert len(ids) == len(set(ids))
    assert all(p.id.startswith("arith-train-") for p in default_task.train)
    assert all(p.id.startswith("arith-test-") for p in default_task.test)


@pytest.mark.parametrize("num_train, num_test, seed", [(5, 5, 0), (300, 100, 7), (1000, 400, 99)])
def test_load_task_disjoint_for_other_sizes(num_train, num_test, seed):
    task = load_task(TaskConfig(num_train=num_train, num_test=num_test, seed=seed, difficulties=[1]))
    assert len(task.train) == num_train and len(task.test) == num_test
    assert not {p.question for p in task.train} & {p.question for p in task.test}


def test_load_task_removes_questions_the_test_split_also_drew():
    # easy problems from two random streams do collide: here 6 of the raw train draws are test questions
    cfg = TaskConfig(num_train=2000, num_test=200, seed=5, difficulties=[1])
    test_q = {p.question for p in arithmetic_problems(200, seed=5, split="test", difficulties=[1])}
    raw = arithmetic_problems(2200, seed=5, split="train", difficulties=[1])
    assert sum(p.question in test_q for p in raw) > 0
    task = load_task(cfg)
    assert len(task.train) == 2000 and {p.question for p in task.test} == test_q
    assert not {p.question for p in task.train} & test_q


def test_gold_solutions_end_with_answer_and_verify_correct(default_task):
    judge = VerifyConfig(extractors=["answer_line", "boxed", "answer_is"])  # conf/judge/verify.yaml
    for p in default_task.train + default_task.test:
        assert p.solution is not None
        assert p.solution.splitlines()[-1] == f"Answer: {p.answer}"
        v = default_task.check(p, p.solution, judge)
        assert (v.extracted, v.extractor, v.status, v.score) == (p.answer, "answer_line", CORRECT, 1.0), p


def test_the_task_owns_its_checker_and_feedback(default_task):
    p = default_task.test[0]
    wrong = default_task.check(p, f"Answer: {int(p.answer) + 1}")
    assert (wrong.status, wrong.score, wrong.reward) == (INCORRECT, 0.0, 0.0)
    assert wrong.feedback == f"wrong final answer: got {int(p.answer) + 1}, expected {p.answer}"
    assert default_task.check(p, "no idea").status == UNPARSEABLE
    assert default_task.problem(p.id) is p and default_task.problem(default_task.train[0].id) is default_task.train[0]
    rec = default_task.prompt_records([p], TaskConfig())[0]
    assert rec["prompt_id"] == p.id and rec["answer"] == p.answer and rec["solution"] == p.solution
    assert rec["messages"] == [{"role": "user", "content": p.question}]


def _solve(p: Problem) -> int:
    """An independent solver that reads the numbers back out of the question text."""
    n = [int(x) for x in re.findall(r"\d+", p.question)]
    if p.kind == "add":
        return sum(n)
    if p.kind == "sub":
        return n[0] - sum(n[1:])
    if p.kind == "mul":
        return n[0] * n[1]
    if p.kind == "div":
        assert n[0] % n[1] == 0
        return n[0] // n[1]
    if p.kind == "compare":
        return n[1] - n[0]
    if p.kind == "two_step":
        return n[2] - n[0] * n[1]
    raise AssertionError(p.kind)


def test_gold_answers_are_right(default_task):
    for p in default_task.train + default_task.test:
        assert p.answer == str(int(p.answer)) and int(p.answer) > 0
        assert _solve(p) == int(p.answer), p
        for line in p.solution.splitlines()[:-1]:  # every "Step k: a op b = c" is true arithmetic
            m = re.fullmatch(r"Step \d+: (\d+) ([-+x/]) (\d+) = (\d+)", line)
            assert m, line
            a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            assert {"+": a + b, "-": a - b, "x": a * b, "/": a / b}[op] == c, line


def test_all_kinds_and_difficulties_appear(default_task):
    for split in (default_task.train, default_task.test):
        assert {p.kind for p in split} == set(KINDS) and len(KINDS) == 6
        assert {p.difficulty for p in split} == {1, 2, 3}
    combos = Counter((p.kind, p.difficulty) for p in default_task.train)
    assert len(combos) == 18 and min(combos.values()) >= 50


@pytest.mark.parametrize("difficulties", [[1], [2], [3], [1, 3], [3, 2]])
def test_requested_difficulties_only(difficulties):
    task = load_task(TaskConfig(num_train=120, num_test=36, difficulties=difficulties))
    for split in (task.train, task.test):
        assert {p.difficulty for p in split} == set(difficulties)
        assert {p.kind for p in split} == set(KINDS)


def test_difficulty_scales_operands():
    easy = arithmetic_problems(60, seed=0, split="train", difficulties=[1])
    hard = arithmetic_problems(60, seed=0, split="train", difficulties=[3])
    easy_add = [p for p in easy if p.kind == "add"]
    hard_add = [p for p in hard if p.kind == "add"]
    assert all(2 <= int(x) <= 20 for p in easy_add for x in re.findall(r"\d+", p.question))
    assert all(100 <= int(x) <= 999 for p in hard_add for x in re.findall(r"\d+", p.question))


def test_messages_and_max_test():
    cfg = TaskConfig(num_train=10, num_test=30, max_test=7, system_prompt="Be exact.",
                     prompt_template="Q: {question}\nEnd with 'Answer: <n>'.")
    task = load_task(cfg)
    assert len(task.test) == 7
    p = task.train[0]
    assert task.messages(p, cfg) == [{"role": "system", "content": "Be exact."},
                                     {"role": "user", "content": f"Q: {p.question}\nEnd with 'Answer: <n>'."}]
    assert task.messages(p, TaskConfig()) == [{"role": "user", "content": p.question}]


@pytest.mark.parametrize("kw", [
    {"prompts_per_iteration": 0},
    {"prompts_per_iteration": -2},
    {"max_test": 0},
    {"prompt_template": "Solve this problem."},
    {"prompt_template": "{q}"},
    {"difficulties": [4]},
    {"difficulties": [0, 1]},
    {"difficulties": []},
    {"num_train": 0},
    {"num_test": 0},
])
def test_task_config_refuses_bad_values(kw):
    with pytest.raises(ValueError):
        TaskConfig(**kw)


def test_task_config_accepts_good_values():
    TaskConfig(prompts_per_iteration=1, max_test=1, difficulties=[2], prompt_template="x {question} y")
    TaskConfig(prompts_per_iteration=None, max_test=None)


# --------------------------------------------------------------------------- select_prompts


def test_select_prompts_disjoint_until_wrap():
    problems = arithmetic_problems(20, seed=0, split="train")
    per = 6
    slices = [select_prompts(problems, it, per, seed=3) for it in range(1, 5)]
    assert all(len(s) == per for s in slices)
    ids = [[p.id for p in s] for s in slices]
    first3 = ids[0] + ids[1] + ids[2]
    assert len(set(first3)) == 18  # iterations 1-3: disjoint
    # iteration 4 takes the 2 unused problems, then wraps to the start of the same shuffle
    unused = {p.id for p in problems} - set(first3)
    assert set(ids[3][:2]) == unused and ids[3][2:] == ids[0][:4]
    assert len(set(ids[3])) == per
    # iteration 1 is the start of the seeded shuffle: the same shuffle, read from the beginning
    whole = select_prompts(problems, 1, len(problems), seed=3)
    assert sorted(p.id for p in whole) == sorted(p.id for p in problems)
    assert [p.id for p in whole[:per]] == ids[0] and [p.id for p in whole[per:2 * per]] == ids[1]
    # deterministic given the seed; another seed gives another order
    assert select_prompts(problems, 2, per, seed=3) == slices[1]
    assert [p.id for p in select_prompts(problems, 1, per, seed=4)] != ids[0]


def test_select_prompts_covers_split_once_per_pass():
    problems = arithmetic_problems(30, seed=1, split="train")
    got = [p.id for it in range(1, 6) for p in select_prompts(problems, it, 6, seed=0)]
    assert sorted(got) == sorted(p.id for p in problems)


def test_select_prompts_none_returns_all_and_large_request_is_capped():
    problems = arithmetic_problems(12, seed=1, split="train")
    out = select_prompts(problems, 3, None, seed=0)
    assert out == problems and out is not problems
    big = select_prompts(problems, 2, 50, seed=0)
    assert len(big) == 12 and {p.id for p in big} == {p.id for p in problems}


# --------------------------------------------------------------------------- load_problems: local files


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """Keep the datasets cache of these tiny files out of the user's cache."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


GOOD_ROWS = [{"q": f"What is {i} + 1?", "a": str(i + 1), "s": f"{i} + 1 = {i + 1}\nAnswer: {i + 1}"}
             for i in range(12)]
BAD_ROWS = [
    {"q": "", "a": "3", "s": "x"},  # empty question
    {"q": "   ", "a": "3", "s": "x"},  # blank question
    {"q": "Where is the answer?", "s": "x"},  # missing answer
    {"q": "Blank answer?", "a": "  ", "s": "x"},  # blank answer
    {"q": "What is 0 + 1?", "a": "1", "s": "dup"},  # duplicate question
    {"q": "  What is 1 + 1?  ", "a": "2", "s": "dup"},  # duplicate after stripping
]


def _file_cfg(path, **kw):
    kw = {"question_field": "q", "answer_field": "a", "solution_field": "s", "test_size": 4, **kw}
    return TaskConfig(source=str(path), **kw)


def test_load_jsonl_custom_fields_skips_and_splits(tmp_path):
    path = _write_jsonl(tmp_path / "data.jsonl", GOOD_ROWS[:6] + BAD_ROWS + GOOD_ROWS[6:])
    task = load_task(_file_cfg(path))
    assert task.skipped == {"empty_question": 2, "bad_answer": 2, "duplicate": 2}
    assert len(task.test) == 4 and len(task.train) == 8
    by_q = {p.question: p for p in task.train + task.test}
    assert set(by_q) == {r["q"] for r in GOOD_ROWS}
    for r in GOOD_ROWS:
        p = by_q[r["q"]]
        assert (p.answer, p.solution, p.kind, p.difficulty) == (r["a"], r["s"], "", 0)
    assert by_q["What is 0 + 1?"].solution != "dup"  # the first of the duplicates is kept
    assert not {p.question for p in task.train} & {p.question for p in task.test}
    ids = [p.id for p in task.train + task.test]
    assert len(ids) == len(set(ids))
    assert load_task(_file_cfg(path)) == task  # seeded carve
    assert load_problems(_file_cfg(path)) == task


def test_load_test_size_is_at_most_half(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", GOOD_ROWS[:5])
    task = load_problems(_file_cfg(path, test_size=200))
    assert (len(task.train), len(task.test)) == (3, 2)


def test_load_parquet_custom_fields(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "problem": ["Add 2 and 2.", "", "Add 3 and 4.", "Add 5 and 5.", "Add 1 and 8.", " Add 2 and 2. ", None],
        "final": ["4", "7", None, "10", "9", "7", "3"],
        "worked": ["2 + 2 = 4\nAnswer: 4", None, None, "", "Answer: 9", None, None],
        "uid": ["u1", "u2", "u3", "u4", "u5", "u6", "u7"],
    })
    path = tmp_path / "data.parquet"
    pq.write_table(table, path)
    cfg = TaskConfig(source=str(path), question_field="problem", answer_field="final", solution_field="worked",
                     id_field="uid", test_size=1)
    task = load_task(cfg)
    assert task.skipped == {"empty_question": 2, "bad_answer": 1, "duplicate": 1}
    got = {p.id: p for p in task.train + task.test}
    assert set(got) == {"u1", "u4", "u5"}
    assert got["u1"] == Problem(id="u1", question="Add 2 and 2.", answer="4", solution="2 + 2 = 4\nAnswer: 4")
    assert got["u4"].solution is None  # a blank solution is no solution
    assert len(task.test) == 1 and len(task.train) == 2
    assert not {p.id for p in task.train} & {p.id for p in task.test}


def test_load_numeric_answers_become_text(tmp_path):
    rows = [{"question": f"q{i}?", "answer": i * 10} for i in range(4)]
    task = load_problems(TaskConfig(source=str(_write_jsonl(tmp_path / "n.jsonl", rows))))
    assert sorted(p.answer for p in task.train + task.test) == ["0", "10", "20", "30"]


def test_load_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere" / "missing.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_task(TaskConfig(source=str(path)))
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        load_problems(TaskConfig(source=str(tmp_path / "missing.parquet")))


@pytest.mark.parametrize("field_kw, name", [
    ({"question_field": "prompt"}, "prompt"),
    ({"answer_field": "gold"}, "gold"),
    ({"solution_field": "rationale"}, "rationale"),
    ({"id_field": "uid"}, "uid"),
])
def test_load_field_no_row_has(tmp_path, field_kw, name):
    path = _write_jsonl(tmp_path / "d.jsonl", [{"question": "q?", "answer": "1"}, {"question": "r?", "answer": "2"}])
    with pytest.raises(TaskInputError, match=repr(name)):
        load_problems(TaskConfig(source=str(path), **field_kw))


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(ValueError, match="empty.jsonl"):
        load_problems(TaskConfig(source=str(path)))


def test_load_only_unusable_rows(tmp_path):
    path = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "", "answer": "1"}, {"question": "q?", "answer": ""}])
    with pytest.raises(ValueError, match="no usable rows"):
        load_problems(TaskConfig(source=str(path)))


def test_load_single_usable_row_cannot_split(tmp_path):
    path = _write_jsonl(tmp_path / "one.jsonl", [{"question": "q?", "answer": "1"}, {"question": "", "answer": "2"}])
    with pytest.raises(ValueError, match=re.escape("need at least 2 usable rows to split train/test, got 1 "
                                                   "(skipped: {'empty_question': 1})")):
        load_problems(TaskConfig(source=str(path)))


def test_a_file_of_another_kind_is_named(tmp_path):
    """Was datasets' "Couldn't find any data file at ..." for a file that is there."""
    path = tmp_path / "problems.txt"
    path.write_text("1+1?\n")
    with pytest.raises(TaskInputError, match=re.escape(f"task.source: {path}: not a .jsonl, .json, .parquet or .csv "
                                                       "file")):
        load_problems(TaskConfig(source=str(path)))


def test_load_duplicates_dropped_across_whole_file(tmp_path):
    rows = [{"question": "Same?", "answer": "1"}] * 5 + [{"question": "Other?", "answer": "2"},
                                                         {"question": "Same?", "answer": "9"}]
    task = load_problems(TaskConfig(source=str(_write_jsonl(tmp_path / "dups.jsonl", rows))))
    assert task.skipped == {"duplicate": 5}
    got = {p.question: p.answer for p in task.train + task.test}
    assert got == {"Same?": "1", "Other?": "2"}


def test_load_dataset_folder_with_train_and_test_splits(tmp_path):
    """A `datasets.load_dataset` source (here a local folder with train/test files, as a hub dataset would be):
    its own splits are used, and a train question that is also in the test split is dropped."""
    folder = tmp_path / "mydata"
    folder.mkdir()
    _write_jsonl(folder / "train.jsonl", GOOD_ROWS[:8])
    _write_jsonl(folder / "test.jsonl", GOOD_ROWS[7:12])
    task = load_task(TaskConfig(source=str(folder), question_field="q", answer_field="a", solution_field="s"))
    assert len(task.test) == 5 and len(task.train) == 7 and task.skipped == {"in_test_split": 1}
    assert not {p.question for p in task.train} & {p.question for p in task.test}
    assert task.train[0].solution and task.train[0].answer == "1"
    with pytest.raises(ValueError, match="split 'validation'"):
        load_task(TaskConfig(source=str(folder), question_field="q", answer_field="a", test_split="validation"))


# --------------------------------------------------------------------------- malformed files and GSM8K's format


@pytest.mark.parametrize("name, content, message", [
    ("csv.jsonl", b"question,answer\nWhat is 1+1?,2\n", r"csv.jsonl:1: not a JSON object .* CSV\? name the file .csv"),
    ("cut.jsonl", b'{"question": "a?", "answer": "1"}\n{"question": "b?", "ans', r"cut.jsonl:2: not a JSON object"),
    ("latin1.jsonl", b'{"question": "a?", "answer": "1"}\n{"question": "caf\xe9?", "answer": "2"}\n',
     r"latin1.jsonl:2: not UTF-8 text \(byte 0xe9"),
    ("array.jsonl", b'[{"question": "a?", "answer": "1"},\n {"question": "b?", "answer": "2"}]\n',
     r"array.jsonl:1: .*a JSON array\? name the file .json"),
    ("nulls.jsonl", b'{"question": "a?", "answer": "1"}\nnull\n', r"nulls.jsonl:2: expected a JSON object per line, got null"),
    ("bad.json", b'[{"question": "a?", "answer": "1"},\n {"question": "b?" "answer": "2"}]',
     r"bad.json:2: invalid JSON \(Expecting ',' delimiter"),
    ("scalars.json", b'[{"question": "a?", "answer": "1"}, 3]', r"scalars.json: element 1 of the array is a int"),
    ("ragged.csv", b"question,answer\nWhat is 1+1?,2\nWhat is 2+2?,4,extra\n", r"ragged.csv:3: more values than"),
    ("broken.parquet", b"PAR1 this is not parquet", r"broken.parquet: not a readable Parquet file"),
])
def test_malformed_files_are_one_line_naming_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TaskInputError, match=message) as e:
        load_task(TaskConfig(source=str(path)))
    assert "\n" not in str(e.value) and e.value.__cause__ is None


def test_null_and_empty_fields_are_skipped_and_counted(tmp_path):
    path = tmp_path / "holes.jsonl"
    path.write_text('{"question": null, "answer": "1"}\n{"question": "a?", "answer": null}\n'
                    '{"question": "b?", "answer": "2"}\n\n{"question": "c?", "answer": "3"}\n')
    task = load_task(TaskConfig(source=str(path)))
    assert task.skipped == {"empty_question": 1, "bad_answer": 1} and len(task.train + task.test) == 2


GSM8K_ROWS = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips altogether "
               "in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                 "How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = "
               "$<<0.2*50=10>>10.\n#### 10"},
    {"question": "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total?",
     "answer": "It takes 2/2=<<2/2=1>>1 bolt of white fiber\nSo the total amount of fabric is 2+1=<<2+1=3>>3 bolts\n#### 3"},
    {"question": "Tim has 1,200 stamps and buys 34 more. How many stamps does he have?",
     "answer": "1,200 + 34 = <<1200+34=1234>>1,234\n#### 1,234"},
]


def test_gsm8k_answers_give_gold_answer_and_solution(tmp_path):
    from stages.tasks.files import gsm8k_answer

    final, solution = gsm8k_answer(GSM8K_ROWS[0]["answer"])
    assert final == "72"
    assert solution == ("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and "
                        "May.\nAnswer: 72")
    assert gsm8k_answer("72") is None and gsm8k_answer("#### 5 and #### 6") is None
    task = load_task(TaskConfig(source=str(_write_jsonl(tmp_path / "gsm8k.jsonl", GSM8K_ROWS)), test_size=2))
    by_q = {p.question: p for p in task.train + task.test}
    last = by_q[GSM8K_ROWS[3]["question"]]
    assert last.answer == "1234" and last.solution.endswith("Answer: 1234") and "<<" not in last.solution
    assert all(task.check(p, p.solution).status == "correct" for p in by_q.values())
