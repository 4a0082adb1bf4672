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
