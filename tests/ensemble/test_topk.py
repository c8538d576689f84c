"""Top-k trial ensembles from a real Optuna study (journal storage), and their bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import torch

from tunekit.ensemble import comparison, rank_trials, select_from_study, topk_members
from tunekit.errors import CheckpointError, ConfigError, TunekitError
from tunekit.run import train
from tunekit.testing import tiny_recipe


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[str, dict[int, Path]]:
    """Four finished one-epoch trials in two stages ("s/coarse", "s/fine") of one journal storage."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    tmp = tmp_path_factory.mktemp("study")
    journal = tmp / "study.journal"
    storage = JournalStorage(JournalFileBackend(str(journal)))
    runs: dict[int, Path] = {}
    lrs = [0.003, 0.05, 0.1, 0.02]
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    for stage, numbers in (("coarse", [0, 1]), ("fine", [2, 3])):
        s = optuna.create_study(study_name=f"s/{stage}", storage=storage, direction="maximize")
        for i in numbers:
            recipe = tiny_recipe(tmp, name=f"trial{i}", optim={"lr": lrs[i]}, train={"epochs": 1})
            summary = train(recipe, out=tmp / f"trial{i}", progress=False)
            runs[i] = tmp / f"trial{i}"
            s.add_trial(
                optuna.trial.create_trial(
                    params={"lr": lrs[i]},
                    distributions=dist,
                    value=summary["best"]["value"]
                    + i * 1e-3,  # distinct values, ordered by quality
                    user_attrs={"run_dir": str(runs[i])},
                )
            )
    # A pruned trial and an unrelated study are not members.
    optuna.create_study(study_name="other", storage=storage).add_trial(
        optuna.trial.create_trial(
            params={}, distributions={}, value=1.0, user_attrs={"run_dir": str(runs[0])}
        )
    )
    return str(journal), runs


def test_trials_of_all_stages_are_ranked_best_first(study) -> None:
    journal, _ = study
    ranked = rank_trials(journal, "s")
    assert len(ranked) == 4
    values = [r.value for r in ranked]
    assert values == sorted(values, reverse=True)
    assert {r.study for r in ranked} == {"s/coarse", "s/fine"}


def test_top_k_members_and_their_ensemble(study) -> None:
    journal, _runs = study
    ranked = rank_trials(journal, "s")
    members, contexts = topk_members(journal, "s", 2)
    assert len(members) == 2 and len(contexts) == 2
    assert [Path(m.source).parent.parent for m in members] == [r.run_dir for r in ranked[:2]]
    # The member's weights are its run's best checkpoint.
    best = torch.load(ranked[0].run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    for k, v in members[0].model.state_dict().items():
        assert torch.equal(v, best[k]), k
    rows = comparison(select_from_study("s", journal, 2))
    assert [r.kind for r in rows] == ["member", "member", "ensemble"]
    for r in rows:
        assert 0.0 <= r.metrics["val/top1"] <= 1.0 and r.metrics["val/loss"] > 0


def test_unknown_study_lists_the_ones_there(study) -> None:
    journal, _ = study
    with pytest.raises(
        TunekitError, match=r"no study 'sx' in the storage.*studies there: other, s/coarse, s/fine"
    ):
        rank_trials(journal, "sx")
    with pytest.raises(TunekitError, match="no such journal file"):
        rank_trials(journal + ".missing", "s")


def test_members_with_different_class_counts_are_refused(study, tmp_path) -> None:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal_src, _runs = study
    journal = tmp_path / "j.journal"
    shutil.copy(journal_src, journal)
    odd = tiny_recipe(
        tmp_path, name="odd", data={"kwargs": {"num_classes": 3}}, train={"epochs": 1}
    )
    train(odd, out=tmp_path / "odd", progress=False)
    s = optuna.load_study(
        study_name="s/fine", storage=JournalStorage(JournalFileBackend(str(journal)))
    )
    s.add_trial(
        optuna.trial.create_trial(
            params={"lr": 0.1},
            distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)},
            value=10.0,  # the best, so it is a member
            user_attrs={"run_dir": str(tmp_path / "odd")},
        )
    )
    with pytest.raises(
        ConfigError,
        match=r"members have different class counts: trial \d+ \(s/fine\) has 3, trial \d+ \(s/\w+\) has 4",
    ) as exc:
        topk_members(str(journal), "s", 2)
    assert "\n" not in str(exc.value)


def test_a_missing_checkpoint_is_one_clear_line(study, tmp_path) -> None:
    journal, _runs = study
    ranked = rank_trials(journal, "s")
    broken = tmp_path / "broken"
    shutil.copytree(ranked[0].run_dir, broken)
    (broken / "checkpoints" / "best.pt").unlink()
    (broken / "summary.json").unlink()
    from tunekit.ensemble import checkpoint_member, open_run

    with pytest.raises(
        CheckpointError, match=r"best\.pt: no best checkpoint in run .*broken"
    ) as exc:
        checkpoint_member(open_run(broken), "best")
    assert "\n" not in str(exc.value)


def test_asking_for_more_members_than_trials_warns_and_the_file_records_it(
    study, tmp_path, capsys
) -> None:
    from tunekit.cli import main
    from tunekit.ensemble import read_metadata

    journal, _ = study
    out = tmp_path / "all.pt"
    argv = ["ensemble", "export", "--study", "s", "--storage", journal, "--top-k", "50"]
    assert main([*argv, "--out", str(out), "--no-eval"]) == 0
    captured = capsys.readouterr()
    warning = "tunekit: warning: asked for 50 members, study 's' has 4 complete trials; exporting 4"
    assert warning in captured.err.splitlines(), captured.err
    assert "(torchscript, 4 members)" in captured.out
    meta = read_metadata(out)
    assert meta["top_k"] == {"requested": 50, "exported": 4} and len(meta["members"]) == 4
    # Asking for what there is says nothing.
    assert main([*argv[:-1], "4", "--out", str(out), "--no-eval"]) == 0
    assert "warning" not in capsys.readouterr().err
    assert read_metadata(out)["top_k"] == {"requested": 4, "exported": 4}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--run", "{tmp}", "--top-k", "2"],
            "field '--top-k': --top-k goes with --study, not --run",
        ),
        (["--run", "{tmp}", "--storage", "x"], "field '--storage': --storage goes with --study"),
        (["--run", "{tmp}", "--checkpoint", "last"], "--checkpoint goes with --study"),
        (
            ["--study", "s", "--storage", "{journal}", "--last", "2"],
            "--last goes with --run, not --study",
        ),
        (
            ["--study", "s", "--storage", "{journal}", "--members", "ema"],
            "--members goes with --run",
        ),
        (["--study", "s", "--storage", "{journal}", "--top-k", "0"], "--top-k must be 1 or more"),
    ],
)
def test_an_option_of_the_other_source_is_one_line(
    extra: list[str], message: str, study, tmp_path, capsys
) -> None:
    from tunekit.cli import main

    journal, _ = study
    fill = {"tmp": str(tmp_path), "journal": journal}
    argv = [
        "ensemble",
        "export",
        *(a.format(**fill) for a in extra),
        "--out",
        str(tmp_path / "x.pt"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tunekit: error: ") and "\n" not in err and message in err, err
    assert not (tmp_path / "x.pt").exists()
