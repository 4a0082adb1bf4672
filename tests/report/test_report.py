"""`cascadec report` on a synthetic run directory: tables, PNGs, self-contained HTML."""

from __future__ import annotations

import base64
import io
import re

import pytest
from rich.console import Console
from synthetic_run import FINAL_SCORES, make_plan, write_run

from runtime.report import ReportError, load_run, main, report, text_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path):
    return write_run(tmp_path / "runs" / "mini", make_plan())


def test_load_run_reads_final_scores_in_plan_order(run_dir):
    s = load_run(run_dir)
    assert s.name == "mini"
    assert s.columns == ["base", "sft", "side", "rl", "mopd"]  # `after` never ran: no column
    assert s.evals == ["code.he", "math.gsm"]
    assert s.scores["mopd"]["math.gsm"] == 0.60  # the step-4 score, not the step-2 one
    assert s.scores == {k: v for k, v in FINAL_SCORES.items()}
    assert [r.status for r in s.stages] == ["done", "done", "done", "done", "pending"]
    assert set(s.metrics) == {"sft", "side", "rl", "mopd"}


def test_text_table_has_every_stage_and_domain(run_dir):
    text = text_report(load_run(run_dir))
    header = next(line for line in text.splitlines() if "domain.eval" in line)
    assert re.search(r"base.*sft.*side \(branch\).*rl.*mopd", header)
    gsm = next(line for line in text.splitlines() if "math.gsm" in line)
    assert re.findall(r"\d\.\d{3}", gsm) == ["0.200", "0.500", "0.620", "0.410", "0.600"]
    assert "teacher(math).gsm = 0.62" in text  # the stop reason is shown
    assert "\x1b[" not in text


def test_report_writes_pngs_and_a_self_contained_html(run_dir, tmp_path):
    out = tmp_path / "out"
    buf = io.StringIO()
    page = report(run_dir, out, console=Console(file=buf, width=140, color_system=None))
    assert page == out / "report.html"
    for name in ("cascade.png", "curves.png"):
        assert (out / name).read_bytes().startswith(PNG)
    html = page.read_text()
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 2 and all(base64.b64decode(i).startswith(PNG) for i in images)
    assert base64.b64decode(images[0]) == (out / "cascade.png").read_bytes()
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched from elsewhere
    table = html.split('<table id="scores">')[1].split("</table>")[0]
    assert table.count("<tr>") == 3 and "side (branch)" in table
    assert '<td class="num best">0.620</td>' in table  # side is the best math.gsm checkpoint
    printed = buf.getvalue()
    assert "math.gsm" in printed and "report.html" in printed


def test_report_default_out_dir_and_missing_metrics(tmp_path):
    run = write_run(tmp_path / "r", make_plan(), upto="sft", metrics=False)
    page = report(run, console=Console(file=io.StringIO()))
    assert page == run / "report" / "report.html"
    s = load_run(run)
    assert s.columns == ["base", "sft"] and s.metrics == {}


def test_html_escapes_names(tmp_path, run_dir):
    state = (run_dir / "state.json").read_text().replace("at step 4", "at step 4 <script>")
    (run_dir / "state.json").write_text(state)
    html = report(run_dir, tmp_path / "o", console=Console(file=io.StringIO())).read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_not_a_run_directory_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ReportError, match=r"is not a run directory: no plan.json there\nhelp: "):
        report(tmp_path)
    assert main([str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


def test_chart_data_mid_stage_points_error_bars_and_targets(run_dir):
    from runtime.report_charts import eval_points, stage_label

    s = load_run(run_dir)
    points = eval_points(s, "math.gsm")
    # mopd (column 4, 4 steps) evaluated at step 2: half way between its parent's column and its own
    assert (3.5, 0.52) in [(x, y) for x, y, _, final in points if not final]
    final = {x: (y, se) for x, y, se, last in points if last}
    assert final[1.0] == (0.5, pytest.approx(0.0625))  # sqrt(0.5 * 0.5 / 64)
    assert stage_label(s, "side").startswith("side (branch)") and stage_label(s, "side").endswith("\ngrpo: math")
    assert stage_label(s, "base").startswith("base") and "\n" not in stage_label(s, "base")


def test_curves_hide_unmeasured_kl_and_split_rewards_by_domain(tmp_path):
    import json

    run = write_run(tmp_path / "runs" / "mini", make_plan())
    rl = run / "stages" / "rl" / "metrics.jsonl"
    rows = [json.loads(line) for line in rl.read_text().splitlines()]
    for r in rows:
        r.update({"kl": 0.0, "reward_mean/math": 0.1 * r["step"], "reward_mean/code": 0.3})
    rl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from runtime.report_charts import curve_panels, curves_chart

    panels = curve_panels(load_run(run))
    kl = dict(panels["KL (GRPO: to reference; distill: reverse KL to teacher)"])
    assert "rl" not in kl and {"side", "mopd"} <= set(kl)  # rl logged kl = 0 throughout: not measured
    assert [label for label, _ in panels["reward by domain"]] == ["code (rl)", "math (rl)"]
    assert dict(panels["reward by domain"])["math (rl)"][0][0] == 4  # after sft's and side's two steps each
    assert curves_chart(load_run(run)).startswith(PNG)


def test_html_stage_table_has_hyperparameters_and_time(run_dir, tmp_path):
    import json

    sft = run_dir / "stages" / "sft" / "metrics.jsonl"
    sft.write_text("".join(json.dumps({**json.loads(line), "step_time_s": 1.25}) + "\n"
                           for line in sft.read_text().splitlines()))
    html = report(run_dir, tmp_path / "out", console=Console(file=io.StringIO(), width=140)).read_text()
    table = html.split('<table id="stages">')[1].split("</table>")[0]
    assert "<th>hyper-parameters</th>" in table and "<th>training time</th>" in table
    sft_row, side_row = table.split("<tr>")[2], table.split("<tr>")[3]
    assert "<td>code, math</td>" in sft_row and "lr = 0.001<br>batch = 8" in sft_row and "2.5 s" in sft_row
    assert "batch = 128 × 16<br>temperature = 1<br>kl = 0" in side_row
