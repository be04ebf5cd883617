"""`pixjax report WORKDIR`: every experiment's report and figures are rebuilt from its
results.json alone, byte for byte; bad folders are one line and exit status 2."""

import json

import pytest
from pixjax.experiments import cli, common


def _smoke(experiment, workdir):
    argv = ["run", experiment, "--workdir", str(workdir), "--preset", "smoke"]
    return cli.main([*argv, "progress=false"])


@pytest.mark.parametrize("experiment", list(cli.EXPERIMENTS))
def test_report_is_rebuilt_from_results_alone(experiment, tmp_path, capsys):
    wd = tmp_path / "run"
    assert _smoke(experiment, wd) == 0
    doc = json.loads((wd / "results.json").read_text())
    assert doc["experiment"] == experiment
    assert doc["results_format"] == common.RESULTS_FORMAT
    report = (wd / "report.md").read_bytes()
    figures = {p.name: p.stat().st_size for p in wd.glob("*.png")}
    (wd / "report.md").unlink()
    for name in figures:
        (wd / name).unlink()
    capsys.readouterr()
    assert cli.main(["report", str(wd)]) == 0
    assert (wd / "report.md").read_bytes() == report
    assert {p.name for p in wd.glob("*.png")} == set(figures)
    # the report states the spread it shows, where it shows one
    text = report.decode()
    if " sd" in text or "+-" in text:
        assert "ddof=1" in text, "a spread over seeds without saying which sd"

    # a results.json with the right header but not this experiment's body (another
    # experiment's, or none): one line, exit 2, nothing written or left behind
    other = "train" if experiment != "train" else "pixel-change"
    for bad in ({**doc, "experiment": other}, {k: doc[k] for k in list(doc)[:3]}):
        (wd / "results.json").write_text(json.dumps(bad))
        (wd / "report.md").unlink()
        before = sorted(p.name for p in wd.iterdir())
        line = _exit_line(capsys, ["report", str(wd)])
        assert "does not have the structure" in line or "results.json" in line
        assert sorted(p.name for p in wd.iterdir()) == before
        (wd / "report.md").write_bytes(report)


def _exit_line(capsys, argv):
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pixjax: error: ")
    return err[0]


def test_report_bad_folders(tmp_path, capsys):
    assert "not a directory" in _exit_line(capsys, ["report", str(tmp_path / "none")])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no results.json" in _exit_line(capsys, ["report", str(empty)])
    assert not (empty / "report.md").exists()

    def doc_in(name, doc):
        d = tmp_path / name
        d.mkdir()
        (d / "results.json").write_text(
            doc if isinstance(doc, str) else json.dumps(doc)
        )
        return str(d)

    line = _exit_line(capsys, ["report", doc_in("broken", "{not json")])
    assert "unreadable" in line
    line = _exit_line(capsys, ["report", doc_in("list", [1, 2])])
    assert "not a pixjax results file" in line
    other = {"experiment": "fooling-cats", "results_format": common.RESULTS_FORMAT}
    line = _exit_line(capsys, ["report", doc_in("other", other)])
    assert "'fooling-cats'" in line and "pixel-change" in line
    old = {"experiment": "pixel-change", "results_format": 1, "pixjax_version": "0.0.9"}
    line = _exit_line(capsys, ["report", doc_in("old", old)])
    assert "results format 1" in line and "0.0.9" in line
    for name in ("other", "old", "list"):
        assert not (tmp_path / name / "report.md").exists()
