"""``mts-lightning init-config``: the shipped configs copied out of the package."""

from pathlib import Path

import pytest

from mts_lightning.commands import main
from mts_lightning.init_config import shipped_configs

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def run(*argv: str) -> None:
    main(["init-config", *argv])


def refused(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_the_package_ships_every_config_of_the_repository():
    expected = sorted(str(p.relative_to(REPO_CONFIGS)) for p in REPO_CONFIGS.rglob("*.yaml"))
    assert list(shipped_configs()) == expected


def test_all_one_file_a_folder_and_an_experiment_with_its_base(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run()
    copied = sorted(str(p.relative_to(tmp_path / "configs")) for p in tmp_path.rglob("*.yaml"))
    assert copied == list(shipped_configs())
    assert f"{len(copied)} configs written to configs" in capsys.readouterr().out

    run("ravdess/modern.yaml", "one")
    assert [p.name for p in (tmp_path / "one").rglob("*.yaml")] == ["modern.yaml"]
    run("loggers", "folder")
    assert sorted(p.name for p in (tmp_path / "folder" / "loggers").iterdir()) == [
        "csv.yaml",
        "tensorboard.yaml",
        "wandb.yaml",
    ]
    run("experiments/speaking_rate_speech.yaml", "exp")
    assert (tmp_path / "exp" / "ravdess" / "modern.yaml").read_bytes() == (
        REPO_CONFIGS / "ravdess" / "modern.yaml"
    ).read_bytes()  # its `configs: [../ravdess/modern.yaml]`
    capsys.readouterr()
    run("ravdess/modern.yaml", "one")  # the same content again: nothing to write
    assert "0 configs written to one (every file was there already)" in capsys.readouterr().out


def test_errors_are_one_line_and_write_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    err = refused(capsys, "ravdes")
    assert err.startswith("mts-lightning init-config: error: NAME 'ravdes' is not a shipped")
    assert "ravdess/" in err and "synthetic.yaml" in err
    assert not (tmp_path / "configs").exists()

    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "synthetic.yaml").write_text("mine\n")
    err = refused(capsys)
    assert "configs/synthetic.yaml exists with other content" in err and "--force" in err
    assert [p.name for p in (tmp_path / "configs").iterdir()] == ["synthetic.yaml"]
    assert (tmp_path / "configs" / "synthetic.yaml").read_text() == "mine\n"
    run("synthetic.yaml", "--force")
    assert (tmp_path / "configs" / "synthetic.yaml").read_bytes() == (
        REPO_CONFIGS / "synthetic.yaml"
    ).read_bytes()

    (tmp_path / "a_file").write_text("")
    err = refused(capsys, "synthetic.yaml", "a_file")
    assert "DEST a_file is a file; expected a folder" in err


def test_list(capsys):
    run("--list")
    names = capsys.readouterr().out.split()
    assert "synthetic.yaml" in names and "experiments/synthetic_conv_vs_mts.yaml" in names
