"""Config composition: every preset composes into valid stage configs; bad values are refused by name."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException

from conftest import ROOT
from pipeline.config import ConfigError, stage_configs
from pipeline.graph import plan, validate

METHODS = ["irpo", "dpo", "star", "self_rewarding", "tpo", "tpo_direct", "meta_rewarding"]


def _compose(*overrides: str):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("task", sorted(p.stem for p in (ROOT / "conf" / "task").glob("*.yaml")))
@pytest.mark.parametrize("method", ["irpo", "seele", "star"])
def test_every_task_preset_validates_with_the_verifiable_methods(task, method):
    """Every task preset's own values pass the stage configs' checks (a task's null field once failed a type check
    that only the default task was tested against)."""
    source = {"file": ["task.source=data/qa.jsonl"], "code_file": ["task.source=data/mbpp.jsonl"]}.get(task, [])
    validate(_compose(f"task={task}", f"method={method}", *source))


@pytest.mark.parametrize("method,experiment,model,logger,eval_",
                         list(itertools.product(METHODS, [None, "smoke"], ["smollm2", "tiny"], ["wandb", "none"],
                                                ["greedy", "maj"])))
def test_every_preset_composes_and_validates(method, experiment, model, logger, eval_):
    cfg = _compose(f"method={method}", f"model={model}", f"logger={logger}", f"eval={eval_}",
                   *([f"experiment={experiment}"] if experiment else []))
    validate(cfg)
    keys = plan(cfg)
    s = stage_configs(cfg)
    metas = sum(stage_configs(cfg, t).meta_judge is not None for t in range(1, cfg.iterations + 1))
    assert len(keys) == 1 + 2 * (s.bootstrap is not None) + 7 * cfg.iterations + metas  # behaviors: on by default
    assert cfg.method_name == method
    if method in ("tpo", "tpo_direct"):
        assert s.thought.enabled == (method == "tpo") and s.llm_judge.model == "initial"
        assert s.pairs.length_control == "zscore" and s.pairs.max_unparsed_share == 0.1 and s.meta_judge is None
    elif method == "meta_rewarding":
        assert s.meta_judge and s.pairs.length_control == "bands" and not s.thought.enabled
        if cfg.iterations >= 3:  # judge pairs in the first two iterations only; rho rises
            assert [stage_configs(cfg, t).meta_judge is not None for t in (1, 2, 3)] == [True, True, False]
            assert [stage_configs(cfg, t).pairs.rho for t in (1, 2, 3)] == [0.0, 0.32, 0.32]
    elif method == "self_rewarding":
        assert s.llm_judge and s.pairs.rule == "score" and s.prompts.source == "self_instruct"
        assert s.task.source == "constraints" and s.train.alpha == 0 and s.bootstrap.train.trainer == "sft"
    elif method == "star":
        assert s.train.trainer == "sft" and s.pairs.rule == "correct"
    else:
        assert s.train.trainer == "dpo" and s.pairs.rule == "irpo"
        assert s.train.alpha == (0.0 if method == "dpo" else 1.0)


def test_default_is_irpo_on_the_embedded_model():
    cfg = _compose()
    assert cfg.method_name == "irpo" and cfg.model.name_or_path.startswith("embedded:")
    assert cfg.run_name == "irpo-smollm2-135m-instruct-arithmetic"
    assert cfg.task.source == "arithmetic" and cfg.logger.kind == "wandb" and cfg.logger.mode == "offline"
    # memory: activations recomputed in DPO's backward; disk: the newest model's weights only
    assert cfg.train.gradient_checkpointing is True and cfg.keep_models == "latest"


def test_file_task_and_user_model_names():
    cfg = _compose("task=file", "task.source=data/my-gsm.jsonl", "model.name_or_path=org/Qwen-0.5B-Instruct")
    assert cfg.run_name == "irpo-Qwen-0.5B-Instruct-my-gsm"


def test_schedule_sets_per_iteration_values():
    cfg = _compose("iterations=4", "+schedule.generate.temperature=[0.8,0.8,1.1]")
    assert [stage_configs(cfg, t).generate.temperature for t in (1, 2, 3, 4)] == [0.8, 0.8, 1.1, 1.1]
    # the schedule is part of the stage identity: iteration 3's generations differ in key from iteration 2's config
    keys = plan(cfg)
    assert keys[(3, "generations")].config["generate"]["temperature"] == 1.1


@pytest.mark.parametrize("override,message", [
    ("iterations=-1", "iterations must be an integer >= 0"),
    ("generate.num_samples=-1", "generate: generate.num_samples must be >= 1"),
    ("pairs.pairs_per_prompt=0", "pairs.pairs_per_prompt (K) must be >= 1"),
    ("task.prompts_per_iteration=0", "task.prompts_per_iteration must be >= 1"),
    ("judge.extractors=[nope]", "judge.extractors: unknown"),
    ("train.num_train_epochs=0", "train.num_train_epochs must be > 0"),
    ("schedule.train.learning_rate=[2e-5,-1]", "train.learning_rate must be > 0"),
    ("on_change=maybe", "on_change must be"),
    ("keep_models=none", "keep_models must be"),
    # were tracebacks when the W&B run started (pydantic's literal_error; int('abc'))
    ("logger.mode=bogus", "logger.mode must be 'offline', 'online' or 'disabled', got 'bogus'"),
    ("logger.log_pairs=abc", "logger.log_pairs must be an integer >= 0, got 'abc'"),
    ("+schedule.generate.nope=[1]", "schedule: generate has no field 'nope'"),
    ("+schedule.generate.temperature=[]", "schedule.generate.temperature: give a non-empty list"),
    ("+schedule.nope.x=[1]", "schedule.nope: not a per-iteration stage group"),
    ("+schedule.judge.kind=[verify,llm]", "schedule.judge.kind: judge.kind picks the judge group (judge=verify|llm|"
                                          "pairwise), whose fields differ, so it cannot change between iterations"),
    ("prompts=self_instruct judge=llm pairs=score +schedule.prompts.source=[task,self_instruct]", None),
    ("+schedule.judge.kind=[verify]", None),
    ("judge.kind=oracle", "judge.kind must be 'verify', 'llm' or 'pairwise'"),
    ("bootstrap=seed", "bootstrap.eft needs a model judge"),
    ("prompts=self_instruct", "prompts=self_instruct writes new instructions without gold answers"),
    ("prompts=self_instruct judge=llm pairs=score", None),  # valid: the task's test split still evaluates
    # IRPO's and STaR's rules need correct/incorrect; a judge's None score was a TypeError after the judging
    ("prompts=self_instruct judge=llm", "pairs.rule=irpo sorts answers by the task's checker (correct or not: "
                                        "judge=verify); judge=llm scores responses: use pairs=score with it"),
    ("method=star judge=pairwise eval=open", "pairs.rule=correct sorts answers by the task's checker"),
    ("train.beta=-1", "train.beta must be > 0"),  # would train an inverted DPO to the end
    ("train.beta=0", "train.beta must be > 0"),
    ("train.gradient_accumulation_steps=0", "train.gradient_accumulation_steps must be an integer >= 1"),
    ("+train.weight_decay=-1", "train.weight_decay must be >= 0"),
    ("train.dtype=float64", "train.dtype must be float32 or bfloat16"),
    ("generate.dtype=float64", "generate.dtype must be one of"),
    ("generate.device=gpu", "generate.device must be auto, cpu, cuda, cuda:N or mps"),
    ("generate.device=cuda:x", "generate.device must be auto, cpu, cuda, cuda:N or mps, got 'cuda:x'"),
    ("generate.top_p=0", "generate.top_p must be in (0, 1]"),
    ("generate.temperature=-1", "generate.temperature must be >= 0"),
    ("+eval.dtype=float32", "eval: unknown field(s) ['dtype']"),  # one engine: generate.dtype
    ("eval.measures=[accuracy,nope]", "eval.measures: unknown ['nope']"),
    ("eval.maj_k=4", "eval.maj_k must be >= 2 with the measure maj"),
    ("judge.timeout_s=0", "judge.timeout_s must be an integer >= 1"),
    ("task.test_size=0", "task.test_size must be >= 1"),
    ("seed=x", "seed must be an integer"),
    ("seed=-1", "seed must be an integer in [0, 2**32), got -1"),  # was a ValueError in TRL, after sampling
    # a value of the wrong type: refused by the field's annotation, not by whatever the stage does with it
    ("generate.seed=abc", "generate.seed must be an integer, got 'abc'"),  # was a TypeError in the first batch
    # Hydra reads an unquoted number as a number: the message says how to pass it as a string
    ("task=gym task.dataset=2024",
     """task.dataset must be a string, got 2024 (a number: quote it for Hydra, "task.dataset='2024'")"""),
    ("generate.temperature=hot", "generate.temperature must be a number, got 'hot'"),
    ("pairs.include_gold=maybe", "pairs.include_gold must be true or false, got 'maybe'"),
    ("pairs.max_pairs=many", "pairs.max_pairs must be an integer, got 'many'"),
    ("eval.maj_k=1", "eval.maj_k must be >= 2 with the measure maj and 0 without it"),
    ("task=file", "task.source has no value"),
    ("task=code_file", "task.layout=humaneval reads code problems from your file, and 'code' is a built-in task"),
    ("judge=pairwise", "judge.template: Interpolation key 'eval.pairwise_template' not found"),  # eval=open sets it
    ("judge=pairwise eval=open pairs=score", None),
    # each was a bare KeyError ('completion', 'eval/accuracy') after M0's evaluation
    ("train=sft", "train.trainer=sft with pairs.rule=irpo: train=sft learns from the examples pairs=correct makes"),
    ("method=star train=dpo", "train.trainer=dpo with pairs.rule=correct"),
    ("eval.measures=[]", "eval.measures must include accuracy"),
    ("eval.measures=[lenient]", "eval.measures must include accuracy"),
    # a field the method preset sets for its own choice of the group: the message says where it came from
    ("method=meta_rewarding judge=pairwise", "judge: unknown field(s) ['num_judgments']; valid: "),
    ("method=meta_rewarding judge=pairwise", "(method=meta_rewarding sets judge.num_judgments: drop it with "
                                             "~judge.num_judgments)"),
    ("+judge.nope=1", "judge: unknown field(s) ['nope']; valid:"),
    # each was the dataclass's own words ("MetaJudgeConfig.__init__() missing 1 required positional argument",
    # "pairwise template must contain [...]"), not naming the option
    ("method=meta_rewarding meta_judge=none", "meta_judge.enabled is true (set here or by schedule.meta_judge.enabled, "
                                             "as method=meta_rewarding does) but meta_judge=none configures no "
                                             "meta-judge: use meta_judge=pairwise, or drop the schedule with "
                                             "~schedule.meta_judge"),
    ("method=meta_rewarding meta_judge=none ~schedule.meta_judge", None),
    ("method=self_rewarding ~judge.template", "judge: judge.template has no value: set it, or choose a judge group "
                                              "that does"),
    ("eval.measures=[accuracy,win_rate]", "eval: eval.measures win_rate judges M(t) against M0 with "
                                          "eval.pairwise_template, which is empty: use eval=open"),
    ("eval=open eval.pairwise_template=x", "eval: eval.pairwise_template: pairwise template must contain"),
])
def test_impossible_values_are_refused_with_a_reason(override, message):
    if message is None:
        validate(_compose(*override.split()))
        return
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(_compose(*override.split()))


def test_unknown_override_key_is_refused_by_hydra():
    with pytest.raises(ConfigCompositionException, match="betta"):
        _compose("train.betta=0.1")


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("override,line", [
    ("method=bogus", "In 'config': Could not find 'method/bogus' (options: dpo, irpo, irpo_refine, meta_rewarding, "
                     "seele, self_rewarding, star, tpo, tpo_direct)"),
    ("methd=irpo", "methd=irpo: the config has no methd (did you mean method or method_name?)"),
    ("generate.temprature=0", "generate.temprature=0: the config has no generate.temprature (did you mean "
                              "generate.temperature?)"),
    ("zzz=1", "zzz=1: the config has no zzz (to add it: +zzz=1)"),
    ("iterations=[1", "iterations=[1: no viable alternative at input '[1' (see "
                      "https://hydra.cc/docs/1.2/advanced/override_grammar/basic for details)"),
    ("~nothing", "Could not delete from config. 'nothing' does not exist."),
])
def test_hydras_own_errors_about_the_command_line_are_one_line_naming_the_override(override, line):
    """Hydra prints these over several lines (a group's options one per line, its config search path) and exit 1;
    `python -m pipeline` prints pipeline.config.command_line_error's line (next test)."""
    from hydra.errors import HydraException

    from pipeline.config import command_line_error

    with pytest.raises(HydraException) as e:
        _compose(override)
    assert command_line_error(e.value) == line


def test_the_cli_prints_hydras_errors_as_one_line_and_exit_2(tmp_path, env):
    """And in a sweep, for the job that has it. Also an interpolation in an override: `hydra.run.dir=${nope}` (Hydra
    resolves it before the job: was its traceback) and `train.beta=${nope}` (was a traceback from reading the
    command's overrides, which resolved their text as interpolations: `seed=${iterations}`, valid, broke the run's
    report)."""
    for override, line in [("methd=irpo", "error: methd=irpo: the config has no methd (did you mean method or "
                                          "method_name?)"),
                           ("hydra.run.dir=${nope}", "error: hydra.run.dir: Interpolation key 'nope' not found"),
                           ("train.beta=${nope}", "error: train.beta: Interpolation key 'nope' not found: set "
                                                  "train.beta or what it refers to")]:
        p = _cli(override, f"paths.output_dir={tmp_path}", env=env)
        assert (p.returncode, p.stderr.strip().splitlines()[-1:]) == (2, [line]), p.stderr[-3000:]
        assert "Traceback" not in p.stderr and "HYDRA_FULL_ERROR" not in p.stderr
    p = _cli("-m", "model=tiny", "method=irpo,bogus", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [  # was Hydra's warning that SweepCheck failed
        "error: sweep job #1 (model=tiny method=bogus): In 'config': Could not find 'method/bogus' (options: dpo, irpo, "
        "irpo_refine, meta_rewarding, seele, self_rewarding, star, tpo, tpo_direct)"], p.stderr
    p = _cli("methd=irpo", f"paths.output_dir={tmp_path}", env={**env, "HYDRA_FULL_ERROR": "1"})  # the user's choice
    assert p.returncode == 1 and "Traceback" in p.stderr and "Could not override 'methd'" in p.stderr
    assert not list(tmp_path.glob("*/iter_00"))  # no work done


def test_a_bug_in_a_job_of_a_parallel_sweep_is_hydras_trace_not_an_error_line(tmp_path, env):
    """The launcher's own process re-raises a job's exception (joblib with worker processes here: n_jobs=1 runs in
    process; submitit the same). HYDRA_FULL_ERROR=1, set by the CLI until the command line is checked, made Hydra
    hand it to the CLI, which printed a bug raised as one of OmegaConf's exceptions as `error: missing_key: Missing
    key missing_key`, exit 2, with no trace."""
    p = _cli("-m", "model=tiny", "experiment=smoke", "logger=none", "method=self_rewarding", "bootstrap=none",
             "prompts.model=py:tests.fake_models:omegaconf_bug", "eval.win_rate_judge=py:tests.fake_models:longer_wins",
             "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env)
    assert p.returncode == 1, p.stderr[-3000:]  # Hydra's report, as for a bug in a job of a single run
    assert "Traceback" in p.stderr and "ConfigAttributeError: Missing key missing_key" in p.stderr, p.stderr[-3000:]
    assert not [line for line in p.stderr.splitlines() if line.startswith("error:")], p.stderr[-3000:]


def test_cli_errors_name_the_key_before_any_model_loads(tmp_path, env):
    e = {**env, "SELFIMPROVE_CACHE": str(tmp_path / "cache")}
    p = _cli("train.betta=0.1", f"hydra.run.dir={tmp_path / 'a'}", env=e)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        "error: train.betta=0.1: the config has no train.betta (did you mean train.beta?)")
    p = _cli("iterations=-1", f"hydra.run.dir={tmp_path / 'b'}", env=e)
    assert p.returncode == 2 and "iterations must be an integer >= 0" in p.stderr
    p = _cli("task=file", f"task.source={tmp_path / 'missing.jsonl'}", f"hydra.run.dir={tmp_path / 'c'}", env=e)
    assert p.returncode == 2 and "missing.jsonl" in p.stderr and "not found" in p.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "1+1?", "a": "2"}\n{"q": "2+2?", "a": "4"}\n')
    p = _cli("task=file", f"task.source={bad}", f"hydra.run.dir={tmp_path / 'd'}", env=e)
    assert p.returncode == 2 and "bad.jsonl" in p.stderr and "'question'" in p.stderr
    p = _cli("task=file", f"paths.output_dir={tmp_path / 'e'}", env=e)  # the run folder's name needs no source
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == "error: task.source has no value: set it " \
        "(task.source=...)"
    assert not (tmp_path / "cache").exists()  # no model was converted or loaded
    p = _cli("paths.cache_dir=/proc/no-cache", f"hydra.run.dir={tmp_path / 'f'}", env=e)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == "error: paths.cache_dir: cannot write /proc/no-cache " \
        "(No such file or directory): set paths.cache_dir or SELFIMPROVE_CACHE to a writable folder"
    # a sweep checks every job before it launches the first (was: job #1 ran to the end, then #2's traceback)
    p = _cli("-m", "model=tiny", "train.beta=0.1,-1", f"hydra.sweep.dir={tmp_path / 'sweep'}", env=e)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == \
        "error: sweep job #1 (model=tiny train.beta=-1): train: train.beta must be > 0, got -1"
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "cache").exists()
    # ... the starting model too (was: found when job #1 started, after job #0 ran)
    p = _cli("-m", "model=tiny", "model.name_or_path=tiny:x,/nonexistent/m", f"hydra.sweep.dir={tmp_path / 'sweep'}",
             env=e)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == "error: sweep job #1 (model=tiny " \
        "model.name_or_path=/nonexistent/m): model.name_or_path: /nonexistent/m is not a model folder (no config.json)"
    p = _cli("model.name_or_path=embedded:smollm3", f"hydra.run.dir={tmp_path / 'g'}", env=e)  # was a traceback
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == \
        "error: model.name_or_path: unknown embedded model 'smollm3' (have: smollm2-135m-instruct)"
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "cache").exists()
    p = _cli("model.name_or_path=", f"hydra.run.dir={tmp_path / 'h'}", env=e)  # was '. is not a model folder'
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == "error: model.name_or_path: no model named " \
        "(give a model folder, a hub id or embedded:smollm2-135m-instruct)"
    # the run folder: an empty name put the run into the folder of all runs (or under /); a path that cannot be a
    # folder was mkdir's traceback inside Hydra (exit 1). Refused before Hydra makes any folder.
    p = _cli("model=tiny", "run_name=", f"paths.output_dir={tmp_path / 'i'}", env=e)
    assert p.returncode == 2 and p.stderr == "error: run_name is empty: give it a value, or leave it out for the default\n"
    p = _cli("-m", "model=tiny", "paths.output_dir=", "seed=0,1", env=e)
    assert p.returncode == 2 and p.stderr == "error: paths.output_dir is empty: give it a value, or leave it out for " \
        "the default\n"
    (tmp_path / "file").write_text("")
    p = _cli("model=tiny", f"paths.output_dir={tmp_path / 'file' / 'runs'}", env=e)
    assert p.returncode == 2 and p.stderr == f"error: paths.output_dir: cannot make {tmp_path / 'file' / 'runs'}/" \
        f"irpo-tiny-arithmetic ({tmp_path / 'file'} is not a folder)\n"
    assert not (tmp_path / "i").exists() and not (ROOT / "irpo-tiny-arithmetic").exists()


def test_wandb_online_without_a_key_is_one_line(tmp_path, env):
    """logger.mode=online with no W&B key (or no network) was wandb's UsageError traceback."""
    e = {k: v for k, v in env.items() if not k.startswith("WANDB_")}
    e.update(HOME=str(tmp_path), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), WANDB_SILENT="true")
    p = _cli("model=tiny", "experiment=smoke", "iterations=0", "logger.mode=online", f"hydra.run.dir={tmp_path / 'r'}",
             env=e)
    assert p.returncode == 2, p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1].startswith("error: logger.mode=online: W&B could not start the run "
                                                        "(UsageError: No API key configured"), p.stderr[-3000:]
    assert "wandb login" in p.stderr and "logger.mode=offline" in p.stderr


@pytest.mark.parametrize("overrides, message", [
    (["judge=llm", "pairs=score", "judge.model=/nonexistent/judge"],
     "judge.model: /nonexistent/judge is not a model folder"),
    (["judge=llm", "pairs=score", "judge.model=py:no_such_module:judge"],
     "judge.model: model 'py:no_such_module:judge': cannot import"),
    (["+schedule.behaviors.classifier=['',/nonexistent/classifier]", "iterations=2"],
     "behaviors.classifier: /nonexistent/classifier is not a model folder"),
])
def test_a_model_named_by_a_stage_is_checked_before_any_work(tmp_path, overrides, message):
    """A judge, classifier or other model named by path or py: callable, in any planned iteration, is checked
    before the starting model loads: a typo used to surface as a traceback after M0's evaluation and sampling."""
    from conftest import TINY, compose_config
    from pipeline.loop import run

    cfg = compose_config(*TINY, "iterations=1", "logger=none", f"paths.cache_dir={tmp_path / 'cache'}", *overrides)
    with pytest.raises(ConfigError, match=re.escape(message)):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "iter_00").exists() and not (tmp_path / "cache").exists()


def test_a_stage_may_name_the_embedded_or_tiny_model(tmp_path, cache_dir, tiny_model):
    """judge.model=embedded:smollm2-135m-instruct (or tiny:) is made in the model cache as model.name_or_path's is
    (was refused as a hub id that cannot be fetched); an unknown embedded name is one line naming the field."""
    import json

    from conftest import run_in_process

    run_in_process(tmp_path / "run", cache_dir, "judge=llm", "pairs=score", "judge.model=tiny:judge", "logger=none")
    stats = json.loads((tmp_path / "run" / "iter_01" / "judgments.done.json").read_text())["stats"]
    assert stats["judgments"] > 0
    with pytest.raises(ConfigError, match=re.escape("judge.model: unknown embedded model 'x' (have: "
                                                    "smollm2-135m-instruct)")):
        run_in_process(tmp_path / "bad", cache_dir, "judge=llm", "pairs=score", "judge.model=embedded:x")
    assert not (tmp_path / "bad" / "iter_00").exists()


def test_a_model_without_a_chat_template_or_off_the_hub_is_refused_before_any_work(tmp_path, tiny_model, env):
    """Every stage prompts its model as a chat: a folder whose tokenizer has no chat template failed in M0's
    evaluation with a traceback, as the starting model or as a judge; a hub id that cannot be fetched (offline, a
    typo) retried and failed there too. Now one line naming the field, before any model loads."""
    import shutil

    from conftest import TINY, compose_config
    from pipeline.loop import run

    plain = tmp_path / "base-model"
    shutil.copytree(tiny_model, plain)
    (plain / "chat_template.jinja").unlink()
    tok = json.loads((plain / "tokenizer_config.json").read_text())
    tok.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(tok))
    for field, overrides in (("model.name_or_path", [f"model.name_or_path={plain}"]),
                             ("judge.model", ["judge=llm", "pairs=score", f"judge.model={plain}"])):
        cfg = compose_config(*TINY, "iterations=1", "logger=none", *overrides)
        with pytest.raises((ConfigError, FileNotFoundError), match=re.escape(
                f"{field}: {plain}: the tokenizer has no chat template (every stage prompts the model as a chat)")):
            run(cfg, tmp_path / field)
        assert not (tmp_path / field / "iter_00").exists()
    p = _cli("model.name_or_path=nobody/no-such-model", f"hydra.run.dir={tmp_path / 'hub'}", env=env)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
        "error: model.name_or_path: nobody/no-such-model is not a local folder and cannot be loaded from the hub: ")


def test_more_prompts_per_iteration_than_the_split_has_is_said_once():
    from conftest import TINY, compose_config
    from pipeline.loop import check_inputs

    notices = check_inputs(compose_config(*TINY, "task.prompts_per_iteration=1000"))
    assert notices.count("task.prompts_per_iteration=1000: the train split has 64 questions, so each iteration "
                         "uses all 64") == 1
    assert not [n for n in check_inputs(compose_config(*TINY)) if "prompts_per_iteration" in n]


def test_the_constraints_measure_needs_a_task_checked_by_rules():
    """eval=open (Self-Rewarding's, TPO's and Meta-Rewarding's evaluation) on an answer task reported its accuracy as
    "constraints met ... of prompts" in every summary line; refused naming the fix."""
    from conftest import TINY, compose_config
    from pipeline.config import ConfigError
    from pipeline.loop import check_inputs

    with pytest.raises(ConfigError, match=re.escape(
            "eval.measures: constraints is the share of a prompt's rule-checked constraints met; task arithmetic is "
            "checked by final answers: remove it (eval.measures=[accuracy,win_rate,judge_quality])")):
        check_inputs(compose_config(*TINY, "judge=pairwise", "pairs=score", "eval=open"))
    check_inputs(compose_config(*TINY, "task=constraints", "judge=pairwise", "pairs=score", "eval=open"))


def test_a_py_model_is_imported_where_its_stage_runs(tmp_path):
    """A py: judge whose module only the stage's worker can import (runner.<group>.env or .python) is checked by
    that worker's interpreter and environment, not refused because this process cannot import it."""
    from conftest import TINY, compose_config
    from pipeline.loop import check_inputs

    (tmp_path / "worker_only_judge.py").write_text("def judge(prompts, cfg):\n    return []\n")
    worker = ["runner=subprocess", f"+runner.judge.env.PYTHONPATH={tmp_path}"]
    check_inputs(compose_config(*TINY, "judge=llm", "pairs=score", "judge.model=py:worker_only_judge:judge", *worker))
    with pytest.raises(ConfigError, match=re.escape("judge.model: model 'py:worker_only_judge:nope': cannot "
                                                    "import nope from 'worker_only_judge'")):
        check_inputs(compose_config(*TINY, "judge=llm", "pairs=score", "judge.model=py:worker_only_judge:nope",
                                    *worker))
    with pytest.raises(ConfigError, match="judge.model: model 'py:worker_only_judge:judge': cannot import"):
        check_inputs(compose_config(*TINY, "judge=llm", "pairs=score",
                                    "judge.model=py:worker_only_judge:judge"))  # in-process


def test_more_processes_than_the_machine_has(monkeypatch):
    """runner.<group>.nproc above the CPU cores was accepted silently (64 processes on 2 cores each loaded a model
    copy and ran past 200 s): a notice. Above the visible GPUs a rank would fail on an invalid device ordinal after
    the models load: refused. (No GPU here: torch.cuda's answers are set for the GPU case.)"""
    import os

    import torch

    from conftest import TINY, compose_config
    from pipeline.loop import check_inputs

    cores = os.cpu_count()
    many = ["runner=multi", f"runner.train.nproc={cores + 1}"]
    assert (f"runner.train.nproc={cores + 1} on {cores} CPU core{'s' * (cores != 1)}: each process holds its own copy "
            "of the model and they share the cores, so fewer processes finish sooner") in check_inputs(
        compose_config(*TINY, *many))
    for fine in (["runner=multi", "runner.train.nproc=1"], [*many, "iterations=0"]):  # one process; no DPO planned
        assert not [n for n in check_inputs(compose_config(*TINY, *fine)) if "runner.train" in n]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    check_inputs(compose_config(*TINY, "runner=multi", "runner.train.nproc=2"))
    with pytest.raises(ConfigError, match=re.escape("runner.generate.nproc=3: one process per GPU and 2 are visible "
                                                    "(CUDA_VISIBLE_DEVICES=0,1): at most 2")):
        check_inputs(compose_config(*TINY, "runner=multi", "runner.generate.nproc=3"))
    check_inputs(compose_config(*TINY, "runner=multi", "runner.generate.nproc=3", "generate.device=cpu"))


def test_a_generate_device_this_machine_lacks_is_refused_before_any_model_loads(monkeypatch, tmp_path, env):
    """generate.device=cuda on a machine without CUDA failed in M0's evaluation with torch's traceback ("Torch not
    compiled with CUDA enabled"), and cuda:N past the visible GPUs would fail on an invalid device ordinal after the
    model loads: one line each, exit 2, before any work. (No GPU here: torch.cuda's answers are set for cuda:N.)"""
    import torch

    from conftest import TINY, compose_config, run_pipeline
    from pipeline.loop import check_inputs

    if not torch.cuda.is_available():
        p = run_pipeline(tmp_path / "run", *TINY, "logger=none", "generate.device=cuda", env=env, check=False)
        assert p.returncode == 2 and "Traceback" not in p.stderr
        assert p.stderr.strip().splitlines()[-1].startswith("error: generate.device=cuda: no CUDA GPU is visible")
        assert not (tmp_path / "run" / "iter_00").exists()
    check_inputs(compose_config(*TINY, "generate.device=cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    check_inputs(compose_config(*TINY, "generate=vllm", "generate.device=cuda:7"))  # vLLM workers pick their GPUs
    check_inputs(compose_config(*TINY, "generate.device=cuda:1"))
    with pytest.raises(ConfigError, match=re.escape("generate.device=cuda:2: 2 GPUs are visible "
                                                    "(CUDA_VISIBLE_DEVICES=0,1): cuda:0 to cuda:1")):
        check_inputs(compose_config(*TINY, "generate.device=cuda:2"))
    with pytest.raises(ConfigError, match=re.escape("generate.device=cuda:2: 2 GPUs are visible")):  # any iteration
        check_inputs(compose_config(*TINY, "+schedule.generate.device=[cpu,cuda:2]"))


def test_vllm_without_the_gpus_it_asks_for_is_refused_before_any_model_loads(monkeypatch):
    """generate=vllm on a machine without enough visible GPUs used to fail in M0's evaluation, as a traceback."""
    from conftest import TINY, compose_config
    from pipeline.loop import check_inputs

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # one GPU, whatever this machine has
    check_inputs(compose_config(*TINY, "generate=vllm"))
    with pytest.raises(ConfigError, match=re.escape("generate.vllm: tensor_parallel_size x data_parallel_size = 2 "
                                                    "GPUs, 1 visible (generate=vllm runs on CUDA GPUs")):
        check_inputs(compose_config(*TINY, "generate=vllm", "generate.vllm.data_parallel_size=2"))


def test_cfg_job_prints_the_composed_config(env):
    p = _cli("--cfg", "job", "method=dpo", "train.beta=0.05", env=env)
    assert p.returncode == 0
    assert "method_name: dpo" in p.stdout and "beta: 0.05" in p.stdout and "alpha: 0.0" in p.stdout


ALLOCATOR_PROBE = ("from pipeline import preload_allocator; preload_allocator(); "
                   "print('mimalloc' if 'libmimalloc' in open('/proc/self/maps').read() else 'glibc')")


def test_the_pipeline_restarts_itself_on_mimalloc_unless_told_system(env):
    e = {k: v for k, v in env.items() if k not in ("LD_PRELOAD", "SELFIMPROVE_MALLOC")}

    def run(**extra):
        return subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE], cwd=ROOT, env={**e, **extra},
                              capture_output=True, text=True, timeout=60)

    p = run()  # the default, restarted once (a loop would time out)
    assert p.returncode == 0 and p.stdout.strip() == "mimalloc", p.stderr
    assert run(SELFIMPROVE_MALLOC="mimalloc").stdout.strip() == "mimalloc"
    assert run(SELFIMPROVE_MALLOC="system").stdout.strip() == "glibc"
    p = _cli("--cfg", "job", "seed=7", env=e)  # the restarted command keeps its arguments
    assert p.returncode == 0 and "seed: 7" in p.stdout


PURGE_PROBE = """
import torch
from pipeline import preload_allocator
preload_allocator()
from stages.modeling import release_memory
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
xs = [torch.ones(300_000 + 1000 * i) for i in range(300)]  # ~0.4 GB in 1.2-2.4 MB blocks, as a training step makes
before = rss()
del xs
release_memory(collect=False)
kept = rss()
release_memory()
print(round(before - kept), round(before - rss()))
"""


def test_under_mimalloc_freed_pages_are_kept_through_a_step_and_returned_after_a_stage(env):
    e = {k: v for k, v in env.items() if k not in ("LD_PRELOAD", "SELFIMPROVE_MALLOC")}
    p = subprocess.run([sys.executable, "-c", PURGE_PROBE], cwd=ROOT, env=e, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    per_step, per_stage = map(int, p.stdout.split())
    assert per_step < 100 and per_stage > 300, p.stdout  # MB handed back after a step / after a stage


def test_a_bad_allocator_choice_is_one_line_before_any_work(env, monkeypatch):
    p = _cli("--cfg", "job", env={**env, "SELFIMPROVE_MALLOC": "jemalloc"})
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        "error: SELFIMPROVE_MALLOC='jemalloc': use mimalloc (the default) or system (the C library's malloc)"]
    import pipeline

    monkeypatch.setattr(pipeline, "find_mimalloc", lambda: None)  # the wheel missing
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv("SELFIMPROVE_MALLOC", raising=False)
    pipeline.preload_allocator()  # by default: stays on the C library's malloc
    monkeypatch.setenv("SELFIMPROVE_MALLOC", "mimalloc")
    with pytest.raises(SystemExit, match="pip install cmeel-mimalloc"):
        pipeline.preload_allocator()


def test_an_override_of_a_scheduled_field_is_refused_not_ignored():
    cfg = _compose("train.learning_rate=1e-6")
    with pytest.raises(ConfigError, match=r"train.learning_rate is set per iteration by schedule"):
        validate(cfg, overrides=["train.learning_rate=1e-6"])
    cfg = _compose("~schedule.train.learning_rate", "train.learning_rate=1e-6")
    validate(cfg, overrides=["~schedule.train.learning_rate", "train.learning_rate=1e-6"])
    assert stage_configs(cfg, 3).train.args["learning_rate"] == 1e-6


def test_default_schedule_lowers_the_learning_rate_after_iteration_1():
    """IRPO and its baselines (conf/method/irpo.yaml): K=4, 2e-5 then 5e-6; the judge-based methods keep the
    project-wide 2e-5 then 1e-5 their figures were measured with."""
    for method in ("irpo", "dpo", "star"):
        cfg = _compose(f"method={method}")
        assert [stage_configs(cfg, t).train.args["learning_rate"] for t in (1, 2, 3)] == [2e-5, 5e-6, 5e-6]
    pairs = stage_configs(_compose(), 1).pairs
    assert (pairs.pairs_per_prompt, pairs.max_pairs) == (4, 128)
    assert stage_configs(_compose("method=dpo"), 1).pairs == pairs
    cfg = _compose("method=self_rewarding")
    assert [stage_configs(cfg, t).train.args["learning_rate"] for t in (1, 2, 3)] == [2e-5, 1e-5, 1e-5]


@pytest.mark.parametrize("override,message", [
    ("judge.template=no placeholders", "judge.template must contain"),
    ("judge.num_judgments=0", "judge.num_judgments must be >= 1"),
    ("judge.temperature=0", "judge.temperature=0 gives identical judgments"),
    ("judge.max_score=0", "judge.min_score must be < judge.max_score"),
    ("prompts.template=nothing", "prompts.template must contain {examples}"),
    ("prompts.num_candidates=2", "num_candidates >= num_prompts"),
    ("prompts.max_similarity=0", "prompts.max_similarity must be in"),
    ("pairs.min_gap=-1", "pairs.min_gap must be >= 0"),
    ("eval.pairwise_template=x", "pairwise template must contain"),
    ("task.difficulties=[4]", "task.difficulties must be a non-empty subset"),
    ("+judge.nope=1", "judge: unknown field"),
])
def test_self_rewarding_values_are_refused_with_a_reason(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(_compose("method=self_rewarding", override))


def test_self_rewarding_stage_keys_follow_the_models_they_read():
    s = stage_configs(_compose("method=self_rewarding"))
    assert s.eval.win_rate and "judge_quality" in s.eval.measures and s.bootstrap is not None  # eval=open, seed
    keys = plan(_compose("method=self_rewarding"))
    assert keys[(0, "model")].deps == ["iter_00/bootstrap"]
    assert "iter_00/model" in keys[(1, "prompts")].deps            # M0 writes iteration 1's prompts
    assert "iter_01/model" in keys[(2, "prompts")].deps and "iter_01/prompts" in keys[(2, "prompts")].deps
    assert "iter_01/model" in keys[(2, "judgments")].deps          # M1 judges iteration 2's responses
    assert {"iter_02/model", "iter_00/eval", "iter_00/model"} <= set(keys[(2, "eval")].deps)
    fixed = plan(_compose("method=self_rewarding", "judge.model=/models/judge", "prompts.model=initial"))
    assert fixed[(2, "judgments")].deps == ["iter_02/prompts", "iter_02/generations"]
    assert fixed[(2, "judgments")].config["judge"]["model"] == "/models/judge"
    assert "iter_00/model" in fixed[(2, "prompts")].deps and "iter_01/model" not in fixed[(2, "prompts")].deps


@pytest.mark.parametrize("method,override,message", [
    ("tpo", "thought.template=think_first", "thought.template must contain {instruction}"),
    ("tpo", "pairs.length_control=shortest", "pairs.length_control must be"),
    ("tpo", "pairs.rho=2", "pairs.rho must be in [0, 1]"),
    ("tpo", "judge=pairwise judge.template=x", "judge: judge.template (pairwise template) must contain"),
    ("irpo", "meta_judge=pairwise", "meta_judge needs a pointwise LLM judge"),
    ("meta_rewarding", "meta_judge.template='{instruction}'",
     "meta_judge: meta_judge.template (meta-judge template) must contain"),
    ("meta_rewarding", "meta_judge.max_share=0", "meta_judge.max_share must be in (0, 1)"),
    ("meta_rewarding", "schedule.pairs.rho=[0,3]", "pairs.rho must be in [0, 1]"),  # caught for iteration 2
])
def test_tpo_and_meta_rewarding_values_are_refused_with_a_reason(method, override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(_compose(f"method={method}", *override.split()))


def test_tpo_with_the_pairwise_judge_and_meta_rewarding_stage_keys():
    s = stage_configs(_compose("method=tpo", "judge=pairwise"))
    assert s.model_judge.kind == "pairwise" and s.model_judge.model == "initial" and s.llm_judge is None
    assert "Winner:" in s.model_judge.template  # the win-rate template, which the bootstrap teaches
    keys = plan(_compose("method=tpo", "judge=pairwise"))
    assert keys[(1, "judgments")].deps == ["iter_01/prompts", "iter_01/generations", "iter_00/model"]  # M0 judges
    assert keys[(1, "generations")].config["thought"]["name"] == "generic" == keys[(0, "eval")].config["thought"]["name"]
    assert plan(_compose())[(1, "generations")].config["thought"]["template"] == ""  # no thoughts
    keys = plan(_compose("method=meta_rewarding"))
    assert keys[(1, "meta_judgments")].deps == ["iter_01/prompts", "iter_01/judgments", "iter_00/model"]
    assert keys[(2, "meta_judgments")].deps == ["iter_02/prompts", "iter_02/judgments", "iter_01/model"]
    assert (3, "meta_judgments") not in keys and "iter_03/meta_judgments" not in keys[(3, "pairs")].deps
    assert keys[(1, "pairs")].config["meta_judge"]["max_share"] == 0.2  # the judge pairs' cap is the pairs' identity


@pytest.mark.parametrize("overrides", [["runner=subprocess"], ["runner=multi"], ["generate=vllm"],
                                       ["generate=vllm", "generate.vllm.data_parallel_size=2", "runner=subprocess"],
                                       ["train.quantize=4bit", "train.lora={r: 8, target_modules: all-linear}"]])
def test_scaling_presets_compose_and_validate(overrides):
    cfg = _compose(*overrides)
    validate(cfg)
    assert plan(cfg)


@pytest.mark.parametrize("override,message", [
    ("+runner.judge={kind: torchrun, nproc: 2}", "runner.judge.nproc=2: only ['generate', 'train']"),
    ("+runner.pairs={kind: subprocess}", "runner.pairs: not a stage"),
    ("runner.train.kind=slurm", "runner.train: kind must be one of"),
    ("runner.train.nproc=2", "runner.train: nproc=2 needs kind=torchrun or kind=accelerate"),
    ("generate.backend=sglang", "generate.backend must be 'hf' or 'vllm'"),
    ("train.quantize=4bit", "train.quantize=4bit (QLoRA) trains a LoRA adapter"),
    ("train.quantize=8bit", "train.quantize must be null or '4bit'"),
])
def test_scaling_values_are_refused_with_a_reason(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(_compose(override))


def test_train_processes_enter_the_model_key_generation_processes_do_not():
    base = plan(_compose())
    multi = plan(_compose("runner=multi"))
    assert multi[(1, "generations")].key == base[(1, "generations")].key  # same samples however many processes
    assert multi[(1, "model")].key != base[(1, "model")].key  # the global batch doubled
    assert multi[(1, "model")].config["processes"] == 2 and base[(1, "model")].config["processes"] == 1


def test_a_sweep_job_gets_one_folder_named_by_what_sets_it_apart():
    """Where runs and models go is not part of a job's folder name, and a '/' in a value does not nest the job
    (`-m seed=0,1 paths.output_dir=/data/runs` once put each job four folders deep, where the report and a rerun
    looked for it by name)."""
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose(config_name="config", return_hydra_config=True, overrides=[
            "paths.output_dir=/data/runs", "paths.cache_dir=/data/models", "model.name_or_path=/models/m", "seed=1"])
    HydraConfig.instance().set_config(cfg)  # what ${hydra:job.override_dirname} reads, as in a sweep's job
    try:
        assert cfg.hydra.sweep.subdir == "model.name_or_path=%2Fmodels%2Fm,seed=1"
        assert cfg.hydra.sweep.dir == "/data/runs/irpo-m-arithmetic/multirun"
    finally:
        HydraConfig.instance().cfg = None
