"""The report (`python -m pipeline.report`): intervals across seeds and over held-out problems, grouping runs into
settings, the figures, the HTML in a headless browser (Debian's chromium, where installed), and the report every
finished run writes into its own folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from pipeline.report import (RunData, bootstrap_interval, find_runs, group_runs, main, panel_title, series,
                             summary_table, t_interval, write_report)


def _run(path: Path, seed: int, overrides: list[str], accs: list[float], method: str = "irpo") -> RunData:
    return RunData(path, {"seed": seed, "method_name": method, "train": {"beta": 0.1}, "run_name": f"r{seed}"},
                   overrides + [f"seed={seed}"], [{"iteration": t, "eval/accuracy": a} for t, a in enumerate(accs)], {})


def test_t_interval_matches_the_textbook_formula():
    mean, lo, hi = t_interval([0.5, 0.6, 0.7])
    # mean 0.6, sd 0.1, t(0.975, 2) = 4.3027: half-width 4.3027 * 0.1 / sqrt(3)
    assert mean == pytest.approx(0.6) and hi - mean == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert mean - lo == pytest.approx(hi - mean)
    assert t_interval([0.4]) == (0.4, 0.4, 0.4)  # one run: no interval across seeds


def test_bootstrap_interval_over_problems_brackets_the_rate_and_narrows_with_more_problems():
    small = [1.0] * 10 + [0.0] * 10
    lo, hi = bootstrap_interval(small)
    assert lo < 0.5 < hi and bootstrap_interval(small) == (lo, hi)  # seeded: the same interval every time
    lo2, hi2 = bootstrap_interval(small * 10)
    assert lo < lo2 < 0.5 < hi2 < hi
    # the normal approximation for 20 problems at 50%: +-1.96 * sqrt(.25 / 20) = +-0.22
    assert hi - lo == pytest.approx(2 * 1.96 * np.sqrt(0.25 / 20), abs=0.06)


def test_runs_differing_only_by_seed_form_one_setting_labelled_by_what_sets_it_apart(tmp_path):
    runs = [_run(tmp_path / f"a{s}", s, ["method=irpo", "model=tiny"], [0.1, 0.3, 0.5]) for s in range(3)]
    runs += [_run(tmp_path / "b0", 0, ["method=dpo", "model=tiny"], [0.1, 0.2, 0.2], method="dpo")]
    runs[-1].config["train"] = {"beta": 0.1, "loss_type": ["sigmoid"]}
    groups = group_runs(runs)
    assert [(g.label, len(g.runs)) for g in groups] == [("irpo", 3), ("dpo", 1)]
    s, n = series(groups[0], "eval/accuracy")
    assert n == 3 and s.x == [0, 1, 2] and s.y == pytest.approx([0.1, 0.3, 0.5])
    assert s.lo == pytest.approx([0.1, 0.3, 0.5])  # the seeds agree: an interval of width 0
    runs[1].history[2]["eval/accuracy"] = 0.8
    s, _ = series(group_runs(runs)[0], "eval/accuracy")
    assert s.y[2] == pytest.approx(0.6) and s.lo[2] < 0.6 < s.hi[2]
    table = summary_table(group_runs(runs))
    assert "irpo (n=3)" in table and "dpo (n=1)" in table
    assert re.search(r"60\.0 ± 43\.0", table), table  # sd 0.173, t(2) 4.303, sqrt(3): 43.0 points
    # an unfinished seed (one iteration fewer) still counts where it has numbers
    runs[2].history.pop()
    s, n = series(group_runs(runs)[0], "eval/accuracy")
    assert s.y[2] == pytest.approx(0.65)


def test_a_rates_band_stops_at_its_bounds():
    """Three seeds at 18, 55 and 54% give a t interval of 42 ± 52 points: the figure's band is drawn within
    0-100%; a probability's (judge agreement) within 0-1; other panels' bands as computed."""
    import matplotlib.pyplot as plt

    from pipeline.figures import Series, line_panel

    s = Series("irpo", [0, 1], [0.06, 0.42], lo=[0.06, -0.10], hi=[0.06, 0.95])
    fig, (a, p, b) = plt.subplots(1, 3)
    line_panel(a, [s], "accuracy", "%")
    line_panel(p, [Series("mr", [0, 1], [0.51, 0.9], lo=[0.5, 0.6], hi=[0.52, 1.2])], "judge agreement", "p")
    line_panel(b, [Series("irpo", [0, 1], [1.0, -2.0], lo=[1.0, -3.5], hi=[1.0, 0.5])], "margin", None)
    ya, yp, yb = (ax.collections[0].get_paths()[0].vertices[:, 1] for ax in (a, p, b))
    plt.close(fig)
    assert ya.min() == pytest.approx(0.0) and ya.max() == pytest.approx(95.0)
    assert yp.min() == pytest.approx(0.5) and yp.max() == pytest.approx(1.0)
    assert yb.min() == pytest.approx(-3.5) and yb.max() == pytest.approx(1.0)


def test_every_rate_panel_is_bounded():
    """A rate or probability drawn without bounds would let its seeds' band leave [0, 1] (judge agreement did)."""
    from pipeline.report import LINE_FIGURES

    units = {key: unit for _, _, panels in LINE_FIGURES for key, _, unit in panels}
    assert units["eval/judge_agreement"] == "p"
    assert all(units[k] == "%" for k in units if k.endswith(("accuracy", "_share", "_rate", "_yield", "lenient")))


def test_the_held_out_panel_names_what_eval_accuracy_means_on_the_constraint_task(tmp_path):
    run = _run(tmp_path / "a", 0, [], [0.1, 0.3])
    assert panel_title(group_runs([run]), "eval/accuracy", "accuracy (strict)") == "accuracy (strict)"
    for m in run.history:
        m["eval/instruction_accuracy"] = 0.5
    groups = group_runs([run])
    assert panel_title(groups, "eval/accuracy", "accuracy (strict)") == "prompts meeting every constraint"
    assert panel_title(groups, "eval/instruction_accuracy", "constraints met") == "constraints met"


def test_a_single_run_gets_a_bootstrap_interval_from_its_held_out_problems(tmp_path):
    run = _run(tmp_path / "one", 0, [], [0.25])
    (run.path / "iter_00").mkdir(parents=True)
    pd.DataFrame({"correct": [True] * 5 + [False] * 15}).to_parquet(run.path / "iter_00" / "eval.parquet")
    s, n = series(group_runs([run])[0], "eval/accuracy")
    assert n == 1 and s.lo[0] < 0.25 < s.hi[0] and (s.lo[0], s.hi[0]) == bootstrap_interval([1.0] * 5 + [0.0] * 15)
    assert re.search(r"25\.0 \[\d+\.\d, \d+\.\d\]", summary_table(group_runs([run])))


def test_a_run_whose_command_had_an_interpolation_loads_with_the_overrides_as_typed(tmp_path):
    """`python -m pipeline 'seed=${iterations}'` is valid Hydra; the report read overrides.yaml as a config, resolved
    `${iterations}` as an index into the list, and every such run ended "report not written"."""
    from pipeline.report import load_run

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- iterations=2\n- seed=${iterations}\n")
    assert load_run(tmp_path).overrides == ["iterations=2", "seed=${iterations}"]


def test_bad_paths_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "README.md").write_text("x")  # what `outputs/*` also matches
    assert main([str(tmp_path / "nope")]) == 2
    assert main([str(tmp_path / "empty")]) == 2
    assert main([str(tmp_path / "README.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'nope'}: no such folder",
                   f"error: {tmp_path / 'empty'}: no finished iteration (iter_00/metrics.json) in it or under it",
                   f"error: {tmp_path / 'README.md'}: not a folder (give run or sweep folders)"]


def _figures_shown(html: Path) -> str | None:
    """What a headless chromium shows of the report: 'k of n' figures decoded; None without chromium."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not exe:
        return None
    p = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", html.resolve().as_uri()],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r'data-figures-shown="([^"]+)"', p.stdout)
    assert m, p.stdout[-2000:] + p.stderr[-2000:]
    return m.group(1)


def _check_report(html: Path, figures: set[str]) -> None:
    out = html.parent
    pngs = {p.stem for p in out.glob("*.png")}
    assert figures <= pngs, pngs
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    text = html.read_text()
    assert text.count('src="data:image/png;base64,') == len(pngs)  # self-contained: no file links
    shown = _figures_shown(html)
    if shown is not None:
        assert shown == f"{len(pngs)} of {len(pngs)}"


def test_every_finished_run_writes_its_report(reference_run):
    report = reference_run / "report" / "report.html"
    _check_report(report, {"heldout", "samples", "training", "lengths"})
    text = report.read_text()
    assert "1 run(s) in 1 setting(s)" in text and "bootstrap interval over held-out problems" in text
    versions = json.loads((reference_run / "versions.json").read_text())
    assert versions[-1]["transformers"] and versions[-1]["trl"] and versions[-1]["torch"]
    assert versions[-1]["transformers"] in text  # the report names the libraries that made its numbers


def test_report_of_a_seed_sweep_gives_mean_and_interval(seed_sweep, tmp_path):
    p = subprocess.run([sys.executable, "-m", "pipeline.report", str(seed_sweep), "--out", str(tmp_path / "rep")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "(n=2)" in p.stdout and " ± " in p.stdout, p.stdout
    assert len(find_runs([seed_sweep])) == 2
    _check_report(tmp_path / "rep" / "report.html", {"heldout", "samples", "training", "lengths", "skipped"})
    assert "mean ± half-width of the 95% Student-t interval" in (tmp_path / "rep" / "report.html").read_text()
    # the sweep wrote the same report into its own folder when it ended (conf/config.yaml: hydra.callbacks)
    assert (seed_sweep / "report" / "report.html").read_text().count("<tr>") == 1 + 2  # header + one row per seed


def test_an_out_folder_that_cannot_be_made_is_one_line(reference_run, tmp_path, capsys):
    """Was a FileNotFoundError/NotADirectoryError traceback from mkdir, after every run had been read."""
    from pipeline.report import main

    (tmp_path / "file").write_text("")
    assert main([str(reference_run), "--out", str(tmp_path / "file" / "rep")]) == 2
    assert capsys.readouterr().err == f"error: --out {tmp_path / 'file' / 'rep'}: cannot make this folder (Not a " \
        "directory)\n"
    assert main([str(tmp_path / "typo")]) == 2  # no report/ folder made in a folder that does not exist
    assert capsys.readouterr().err == f"error: {tmp_path / 'typo'}: no such folder\n"
    assert not (tmp_path / "typo").exists()


def test_settings_side_by_side_in_one_figure(reference_run, seed_sweep, tmp_path):
    """Two settings (the reference run's two iterations, the sweep's one) in one report: one line each."""
    path, table = write_report([reference_run, seed_sweep], tmp_path / "both")
    assert "(n=1)" in table and "(n=2)" in table and len(table.splitlines()) == 3 + 3  # title, head, rule; iterations 0-2
    _check_report(path, {"heldout", "training"})


def test_a_run_resumed_under_other_library_versions_is_flagged(tmp_path, monkeypatch):
    from pipeline.report import record_versions

    run = tmp_path / "run"
    (run / "iter_00").mkdir(parents=True)
    (run / "iter_00" / "metrics.json").write_text(json.dumps({"iteration": 0, "eval/accuracy": 0.5}))
    record_versions(run)
    record_versions(run)  # the same versions again: one entry
    assert len(json.loads((run / "versions.json").read_text())) == 1
    path, _ = write_report([run], tmp_path / "rep")
    assert "Warning" not in path.read_text()
    log = json.loads((run / "versions.json").read_text())
    (run / "versions.json").write_text(json.dumps(log + [{**log[0], "transformers": "0.0.1"}]))
    path, _ = write_report([run], tmp_path / "rep")
    assert "resumed under other versions" in path.read_text() and "0.0.1" in path.read_text()
