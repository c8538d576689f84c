"""Every command that writes checks its output place first: one line, exit 2, nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunekit.cli import main

REPO = Path(__file__).resolve().parents[1]

COMMANDS = {
    "train": ["train", "--recipe", "recipes/digits.yaml", "--out", "{out}"],
    "sanity": ["sanity", "--recipe", "recipes/digits.yaml", "--out", "{out}"],
    "lr-find": ["lr-find", "--recipe", "recipes/digits.yaml", "--out", "{out}"],
    "search": ["search", "--study", "studies/digits.yaml", "--out", "{out}"],
    "report": ["report", "{tmp}/no_run", "--out", "{out}/report.html"],
    "ensemble-export": ["ensemble", "export", "--run", "{tmp}/no_run", "--out", "{out}/e.pt"],
    "data-shapes": ["data", "shapes", "--out", "{out}"],
    "demo": ["demo", "--out", "{out}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_output_under_a_file_is_one_line_and_creates_nothing(
    tmp_path, capsys, monkeypatch, command
):
    monkeypatch.chdir(REPO)
    blocker = tmp_path / "a_file"
    blocker.write_text("keep me")
    out = blocker / "out"
    argv = [a.format(out=out, tmp=tmp_path) for a in COMMANDS[command]]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "is a file, not a directory" in err, err
    assert "field '--out'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    assert blocker.read_text() == "keep me"


def test_a_study_report_reads_its_study_directory_from_out(tmp_path, capsys):
    # `report --study NAME --out STUDY_DIR` names where the study is, as `search --out` did.
    rc = main(["report", "--study", "digits", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "is a directory" not in err, err
