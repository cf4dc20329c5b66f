"""Stages as processes (pipeline/runner.py): real subprocesses and real torchrun (gloo) on the tiny model —
a stage run from its saved config, 2-process data-parallel generation, 2-process DDP training, a worker
killed mid-stage and the rerun that recovers — plus QLoRA on CPU and the vLLM worker's request/response format
(without vLLM; the real vLLM run skips unless vLLM and CUDA are there)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import ROOT, TINY, pipeline_cmd, run_pipeline
from pipeline.runner import Runner, RunnerConfig, decode, encode_call, runner_configs
from stages.generate import GenerateConfig, generate, merge_shards
from stages.process import WorkerError, run_workers
from stages.train import TrainConfig, train

PROMPTS = [{"prompt_id": f"p{i}", "messages": [{"role": "user", "content": f"What is {i} + {i}?"}]} for i in range(5)]
PAIRS = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}],
          "chosen": [{"role": "assistant", "content": f"{i} + 1 = {i + 1}. Answer: {i + 1}"}],
          "rejected": [{"role": "assistant", "content": "I do not know."}], "prompt_id": f"q{i}"} for i in range(8)]
GEN = GenerateConfig(num_samples=2, max_new_tokens=8, batch_size=1, temperature=0.8, seed=3)


@pytest.fixture(autouse=True)
def _worker_env(monkeypatch, env):
    """Worker processes inherit this environment (offline, the session's model cache)."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)


# ----------------------------------------------------------------------------- the call as files


def test_arguments_and_results_survive_the_job_folder(tmp_path):
    cfg = TrainConfig(lora={"r": 4, "target_modules": ["q_proj"]}, args={"beta": 0.2, "max_length": 64})
    kwargs = {"model_path": "m", "records": PAIRS, "cfg": cfg, "gold": {"a": [{"kind": "x", "n": 1}], "b": "4"},
              "baseline": None, "previous": [], "output_dir": tmp_path / "out"}
    spec = json.loads(json.dumps(encode_call(kwargs, tmp_path)))
    back = decode(spec, tmp_path)
    assert back["records"] == PAIRS and (tmp_path / "records.jsonl").is_file()
    assert back["cfg"] == cfg and isinstance(back["cfg"], TrainConfig)
    assert back["gold"] == kwargs["gold"] and back["previous"] == [] and back["output_dir"] == str(tmp_path / "out")
    result = ([{"prompt_id": "a", "x": 1}], {"tokens": 3})
    assert decode(json.loads(json.dumps(encode_call(result, tmp_path, "result.0."))), tmp_path) == [*result]
    with pytest.raises(TypeError, match="callbacks"):
        encode_call({"callbacks": [object()]}, tmp_path)


def test_runner_config_is_checked_and_names_the_key():
    import torch

    from pipeline.graph import PROCESS_GROUPS

    assert PROCESS_GROUPS == ("train", "prompts", "generate", "judge", "behaviors", "meta_judge", "refine",
                              "eval")  # the table's
    assert runner_configs({"train": {"kind": "torchrun", "nproc": 2}}, PROCESS_GROUPS)["train"].nproc == 2
    bad = [({"judge": {"kind": "torchrun", "nproc": 2}}, r"runner.judge.nproc=2: only \['generate', 'train'\]"),
           ({"train": {"kind": "subprocess", "nproc": 2}}, "runner.train: nproc=2 needs kind=torchrun"),
           ({"trian": {"kind": "subprocess"}}, "runner.trian: not a stage"),
           ({"train": {"kind": "slurm"}}, "runner.train: kind must be one of"),
           ({"train": {"kind": "accelerate", "accelerate_config": "/nope.yaml"}}, "no such file /nope.yaml")]
    if not torch.cuda.is_available():
        bad.append(({"train": {"kind": "accelerate", "nproc": 2}}, "use kind=torchrun on CPU"))
    for values, msg in bad:
        with pytest.raises(ValueError, match=msg):
            runner_configs(values, PROCESS_GROUPS)


def test_a_failed_worker_reports_its_exit_status_and_log_tail(tmp_path):
    cmd = [sys.executable, "-c", "print('loading'); print('boom: out of memory', flush=True); raise SystemExit(3)"]
    with pytest.raises(WorkerError) as e:
        run_workers([(cmd, dict(os.environ), tmp_path / "w.log")], what="stage iter_01/train", echo=False)
    assert "stage iter_01/train" in str(e.value) and "exit status 3" in str(e.value) and "boom: out of memory" in str(e.value)
    assert "boom" in (tmp_path / "w.log").read_text()


def _join_a_process_group(store_file: str) -> int:
    """A stage function that, like the DPO stage under torchrun (accelerate's state), leaves a process group open."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(store_file, 1), rank=0, world_size=1)
    return dist.get_world_size()


def test_a_worker_closes_the_process_group_its_stage_opened(tmp_path):
    """On GPUs torch warned at every torchrun stage's exit, "destroy_process_group() was not called before program
    exit, which can leak resources" (seen with NCCL on an H200, runner=multi): the worker closes it once the stage
    has returned."""
    import torch.distributed as dist

    from pipeline.runner import work

    job = tmp_path / "train.job"
    job.mkdir()
    spec = {"stage": "iter_01/train", "function": f"{__name__}:_join_a_process_group", "sharded": False,
            "kwargs": encode_call({"store_file": str(tmp_path / "store")}, job)}
    (job / "job.json").write_text(json.dumps(spec))
    try:
        work(job)
        assert not dist.is_initialized()
        assert decode(json.loads((job / "result.0.json").read_text()), job) == 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- real worker processes


def test_generation_in_a_subprocess_matches_in_process(tmp_path, tiny_model):
    here = generate(tiny_model, PROMPTS, GEN)
    run = Runner({"generate": RunnerConfig(kind="subprocess")}, tmp_path)
    there = run("generate", 1, generate, merge=merge_shards, model_path=tiny_model, prompts=PROMPTS, cfg=GEN, desc="gen")
    assert there[0] == here[0] and len(here[0]) == 10
    assert (tmp_path / "iter_01" / "generate.log").is_file() and not list((tmp_path / "iter_01").glob("*.job"))


def test_two_process_generation_merges_shards_in_prompt_order(tmp_path, tiny_model):
    single = generate(tiny_model, PROMPTS, GEN)[0]
    run = Runner({"generate": RunnerConfig(kind="torchrun", nproc=2)}, tmp_path)
    records, stats = run("generate", 1, generate, merge=merge_shards, model_path=tiny_model, prompts=PROMPTS, cfg=GEN)
    assert records == single  # same batches, same seeds: the split does not change the samples
    assert stats["processes"] == 2 and stats["tokens"] == sum(r["num_tokens"] for r in records)
    log = (tmp_path / "iter_01" / "generate.log").read_text()
    assert "[rank 0/2]" in log and "[rank 1/2]" in log  # both ranks worked


def test_train_with_two_torchrun_processes(tmp_path, tiny_model):
    """The shipped DPO config (conf/train/dpo.yaml) with a smaller batch. With its precompute_ref_log_probs, rank 1
    used to fail opening the reference log-probs' cache file, which rank 0 had written into its own temporary folder
    (`python -m pipeline runner=multi` failed in iteration 1's training; this test set other TRL fields then)."""
    from safetensors.torch import load_file

    from conftest import compose_config
    from pipeline.config import stage_configs

    cfg = stage_configs(compose_config(*TINY, "train.per_device_train_batch_size=2", "train.learning_rate=1e-3",
                                       "train.max_length=64", "seed=0")).train
    assert cfg.args["precompute_ref_log_probs"]
    run = Runner({"train": RunnerConfig(kind="torchrun", nproc=2)}, tmp_path)
    out = tmp_path / "iter_01" / "model"
    long = {**PAIRS[0], "prompt": [{"role": "user", "content": "What is 1 + 1? " * 40}], "prompt_id": "long"}
    metrics = run("train", 1, train, model_path=tiny_model, records=[*PAIRS, long], output_dir=out, cfg=cfg, desc="ddp")
    assert metrics["processes"] == 2 and metrics["steps"] == 2  # 8 pairs / (2 per device x 2 processes)
    assert metrics["dropped_long_prompt"] == 1  # TRL leaves the long prompt out; the line is printed once, not per rank
    assert (tmp_path / "iter_01" / "train.log").read_text().count("1 of 9 pairs left out") == 1
    before, after = load_file(Path(tiny_model) / "model.safetensors"), load_file(out / "model.safetensors")
    assert before.keys() == after.keys() and all(before[k].shape == after[k].shape for k in before)
    assert any(not (before[k] == after[k]).all() for k in before)  # trained
    assert json.loads((out / "trainer_log.json").read_text())[-1]["train_loss"] == pytest.approx(metrics["train_loss"])
    assert generate(str(out), PROMPTS[:1], GEN)[0]  # the same kind of checkpoint: the next iteration loads it


def test_a_worker_hands_back_an_input_error_as_itself(tmp_path, tiny_model):
    """A stage's input error in a worker (here every pair's prompt fills max_length) reaches the pipeline as the
    same exception and message as in process (one `error:` line), not as a worker failure with a log tail."""
    from stages.train import TrainDataError

    cfg = TrainConfig(args={"max_length": 10})
    here = pytest.raises(TrainDataError, match=r"^train.max_length=10: the prompt of each of the 8 pairs fills it")
    with here:
        train(tiny_model, PAIRS, tmp_path / "here", cfg)
    run = Runner({"train": RunnerConfig(kind="torchrun", nproc=2)}, tmp_path)
    with pytest.raises(TrainDataError) as there:
        run("train", 1, train, model_path=tiny_model, records=PAIRS, output_dir=tmp_path / "there", cfg=cfg)
    assert str(there.value) == str(here.excinfo.value)
    assert "Traceback" in (tmp_path / "iter_01" / "train.log").read_text()  # the log keeps the worker's traceback


def test_pipeline_with_stages_as_processes_and_a_worker_killed_mid_stage(tmp_path, env, reference_run):
    """Generation and training as subprocesses: the training worker is killed (SIGKILL) mid-stage; the pipeline
    fails with the worker's status and log tail and keeps what was finished; the rerun recovers and gives the
    datasets of the all-in-process reference run (one iteration: `iterations` is not in any stage's identity)."""
    import pandas as pd

    run = tmp_path / "run"
    args = [*TINY, "iterations=1", "logger=none", "runner.generate.kind=subprocess", "runner.train.kind=subprocess"]
    proc = subprocess.Popen(pipeline_cmd(run, *args), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    pid_files = []
    while time.time() < deadline and not pid_files and proc.poll() is None:
        pid_files = list(run.glob("iter_01/train.*.job/worker.0.pid"))
        time.sleep(0.1)
    assert pid_files, "the training worker never started"
    os.kill(int(pid_files[0].read_text()), signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "stage iter_01/train: worker process failed (killed by signal SIGKILL)" in err and "last lines of" in err
    assert (run / "iter_01" / "pairs.done.json").is_file() and not (run / "iter_01" / "model.done.json").exists()
    assert not (run / "iter_01" / "model").exists()
    run_pipeline(run, *args, env=env)
    assert not list(run.glob("iter_*/*.job")) and (run / "iter_01" / "eval.done.json").is_file()
    for name in ("generations", "pairs", "eval"):  # same seeds, same data, wherever the stages ran
        a, b = (pd.read_parquet(r / "iter_01" / f"{name}.parquet") for r in (run, reference_run))
        pd.testing.assert_frame_equal(a, b)


# ----------------------------------------------------------------------------- QLoRA


def test_qlora_trains_a_4bit_base_and_saves_a_plain_merged_model(tmp_path, tiny_model):
    pytest.importorskip("bitsandbytes")
    from safetensors.torch import load_file

    from stages.train import _load

    cfg = TrainConfig(lora={"r": 4, "lora_alpha": 8, "target_modules": "all-linear"}, quantize="4bit",
                      args={"per_device_train_batch_size": 4, "learning_rate": 1e-2, "max_length": 64,
                            "num_train_epochs": 1})
    quantized = _load(tiny_model, "float32", "4bit")
    assert "Linear4bit" in {type(m).__name__ for m in quantized.modules()}
    out = tmp_path / "model"
    metrics = train(tiny_model, PAIRS, out, cfg)
    assert metrics["steps"] == 2
    assert "quantization_config" not in json.loads((out / "config.json").read_text())  # plain, loadable anywhere
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4
    before, after = load_file(Path(tiny_model) / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not (before[k] == after[k]).all() for k in before)


def test_qlora_needs_lora():
    with pytest.raises(ValueError, match="train.quantize=4bit .* set train.lora"):
        TrainConfig(quantize="4bit")


# ----------------------------------------------------------------------------- vLLM worker format


def test_vllm_requests_shard_prompts_with_global_seeds_and_serve_the_adapter(tmp_path):
    from stages.vllm_client import VllmOptions, build_requests
    from stages.vllm_worker import sampling_kwargs

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    model = tmp_path / "m1"
    (model / "adapter").mkdir(parents=True)
    (model / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 8}))
    cfg = GenerateConfig(num_samples=3, seed=7, max_new_tokens=20)
    reqs = build_requests(str(model), PROMPTS, cfg, VllmOptions(data_parallel_size=2, tensor_parallel_size=2))
    assert [[p["index"] for p in r["prompts"]] for r in reqs] == [[0, 1, 2], [3, 4]]
    assert reqs[1]["model"] == str(base) and reqs[1]["lora"] == str(model / "adapter") and reqs[1]["lora_rank"] == 8
    assert reqs[0]["tokenizer"] == str(model) and reqs[0]["engine"]["tensor_parallel_size"] == 2
    assert sampling_kwargs(reqs[1]["sampling"], 4) == {"n": 3, "temperature": 0.8, "top_p": 0.95, "top_k": -1,
                                                        "max_tokens": 20, "seed": 11, "skip_special_tokens": True}
    merged = build_requests(str(model), PROMPTS, cfg, VllmOptions(lora=False))
    assert len(merged) == 1 and merged[0]["model"] == str(model) and merged[0]["lora"] is None
    json.dumps(reqs)  # what the worker reads is plain JSON


def test_vllm_response_records_match_the_hf_format_and_are_checked(tmp_path, tiny_model):
    from stages.vllm_client import VllmOptions, build_requests, read_response
    from stages.vllm_worker import records_from_outputs

    req = build_requests("m", PROMPTS[:2], GenerateConfig(num_samples=2), VllmOptions())[0]
    out = lambda *cs: SimpleNamespace(outputs=[SimpleNamespace(text=t, token_ids=[1] * n, finish_reason=f)  # noqa: E731
                                               for t, n, f in cs])
    records = records_from_outputs(req, [out((" 2 ", 2, "stop"), ("4", 1, "length")), out(("x", 1, "stop"), ("y", 1, "stop"))])
    assert records[:2] == [{"prompt_id": "p0", "sample_idx": 0, "completion": "2", "num_tokens": 2, "finish_reason": "stop"},
                           {"prompt_id": "p0", "sample_idx": 1, "completion": "4", "num_tokens": 1, "finish_reason": "length"}]
    hf = generate(tiny_model, PROMPTS[:1], GenerateConfig(num_samples=1, temperature=0, max_new_tokens=2))[0][0]
    assert set(records[0]) == set(hf)  # the HF backend's record, field for field
    hinted = [{"prompt_id": "h", "messages": [{"role": "user", "content": "1 + 1?"},
                                              {"role": "assistant", "content": "Step 1: 1 + 1 = 2"}]}]
    hreq = build_requests("m", hinted, GenerateConfig(num_samples=1), VllmOptions())[0]
    cont = records_from_outputs(hreq, [out(("\nAnswer: 2 ", 3, "stop"))])[0]["completion"]
    assert cont == "\nAnswer: 2"  # a continued hint (SEELE) keeps its leading newline, as the HF backend does
    (tmp_path / "r.json").write_text(json.dumps({"records": records, "stats": {}}))
    assert read_response(tmp_path / "r.json", req)[0] == records
    (tmp_path / "bad.json").write_text(json.dumps({"records": records[:3], "stats": {}}))
    with pytest.raises(ValueError, match="expected 2 completion"):
        read_response(tmp_path / "bad.json", req)


def test_vllm_options_are_checked():
    with pytest.raises(ValueError, match="generate.vllm: unknown option"):
        GenerateConfig(backend="vllm", vllm={"tp": 2})
    with pytest.raises(ValueError, match="generate.vllm.python: no interpreter"):
        GenerateConfig(backend="vllm", vllm={"python": "/nonexistent/python"})


def test_vllm_worker_without_vllm_says_how_to_fix_it(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm"):
        pytest.skip("vLLM is installed here")
    from stages.vllm_client import WORKER

    (tmp_path / "req.json").write_text("{}")
    p = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "req.json"), str(tmp_path / "resp.json")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 3 and "generate.vllm.python" in p.stderr


def test_vllm_generation_on_gpu(tiny_model):
    import importlib.util

    import torch

    if not torch.cuda.is_available() or not importlib.util.find_spec("vllm"):
        pytest.skip("needs CUDA and vLLM")
    recs, stats = generate(tiny_model, PROMPTS, GenerateConfig(backend="vllm", num_samples=2, max_new_tokens=8))
    assert [(r["prompt_id"], r["sample_idx"]) for r in recs] == [(p["prompt_id"], s) for p in PROMPTS for s in range(2)]
    again = generate(tiny_model, PROMPTS, GenerateConfig(backend="vllm", num_samples=2, max_new_tokens=8))[0]
    assert again == recs  # seeded per prompt
