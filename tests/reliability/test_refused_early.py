"""Refused before anything runs, and nothing left behind: bad values in a multirun, a full disk, a refused config."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import RunTipi
from tests.reliability.test_faults import _mount_tmpfs

FAST = ("debug=fast", "model=unet_small", "progress=none")


def test_a_multirun_with_bad_values_among_good_ones_starts_no_job(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi("-m", *FAST, "processes.train.epochs=1,abc,0")
    assert proc.returncode != 0
    assert "Error processes.train.epochs: 2 of 3 jobs would be refused; no job was started" in proc.stderr
    assert "job #1 (debug=fast model=unet_small progress=none processes.train.epochs=abc): " \
           "processes.train.epochs: expected int, got str 'abc'" in proc.stderr
    assert "job #2 " in proc.stderr and "must be at least 1, got 0" in proc.stderr and "job #0 " not in proc.stderr
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    assert not list(tmp_path.rglob("run.json")), "no job ran"
    left = [p for p in (tmp_path / "multirun").rglob("*")] if (tmp_path / "multirun").exists() else []
    assert not left, f"the refused multirun left {left}"


def test_an_empty_value_in_a_multirun_is_one_message_not_one_per_job(run_tipi: RunTipi, tmp_path: Path) -> None:
    # submitit's launcher: refused before anything is submitted
    proc = run_tipi("-m", *FAST, "seed=", "processes.train.epochs=1,2", "launcher=submitit_local")
    assert proc.returncode != 0
    assert proc.stderr.count("Error seed: 2 of 2 jobs would be refused; no job was started") == 1, proc.stderr
    assert "HYDRA_FULL_ERROR" not in proc.stderr
    assert not list(tmp_path.rglob("run.json")), "nothing was submitted"


def test_a_refused_config_leaves_no_run_directory(run_tipi: RunTipi, tmp_path: Path) -> None:
    proc = run_tipi(*FAST, "processes.train.epochs=0")
    assert proc.returncode == 1 and "Error processes.train.epochs: must be at least 1, got 0" in proc.stderr
    outputs = tmp_path / "outputs"
    assert not outputs.exists() or not any(outputs.rglob("*")), sorted(outputs.rglob("*"))


def test_a_full_disk_at_start_and_at_the_first_checkpoint_is_one_message(run_tipi: RunTipi, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, 64 * 1024)  # room for .hydra/ and run.json, not for the first checkpoint
    try:
        run = disk / "run"
        proc = run_tipi(*FAST, f"hydra.run.dir={run}")
        assert proc.returncode == 1
        assert f"Error permanences.network: cannot write {run}/checkpoints/last.pt: the write stopped short, " \
               "most likely No space left on device (" in proc.stderr
        assert "free on its file system); no checkpoint was written" in proc.stderr
        assert "unexpected pos" not in proc.stderr and "Traceback" not in proc.stderr
        try:  # now fill the disk to the last byte: the next run cannot even start
            with open(disk / "fill", "wb") as fill:
                while True:
                    fill.write(bytes(4096))
                    fill.flush()
        except OSError:
            pass
        again = run_tipi(*FAST, f"hydra.run.dir={disk / 'second'}")
        assert again.returncode == 1
        assert f"Error hydra.run.dir: the output directory '{disk / 'second'}' cannot be written: " \
               "No space left on device (" in again.stderr
        assert "free on its file system)" in again.stderr and "HYDRA_FULL_ERROR" not in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_tab_in_a_users_config_file_is_one_message_with_file_line_and_column(run_tipi: RunTipi,
                                                                               tmp_path: Path) -> None:
    conf = tmp_path / "my_conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "mine.yaml").write_text("# @package _global_\nseed: 3\n\tbad: [1,\n")
    proc = run_tipi("--config-dir", str(tmp_path / "my_conf"), "+experiment=mine")
    assert proc.returncode == 1
    assert f"Error {conf / 'mine.yaml'}: does not parse at line 3, column 1: found character" in proc.stderr
    assert "YAML indents with spaces, never tabs." in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) <= 4, proc.stderr


def test_a_key_set_in_a_step_the_same_command_removes_says_so(run_tipi: RunTipi) -> None:
    proc = run_tipi("~processes.train", "processes.train.epochs=3")
    assert proc.returncode == 1
    assert "Error processes.train: 'processes.train.epochs=3' sets a key in processes.train, which " \
           "'~processes.train' in the same command removes" in proc.stderr
    assert "+processes.train" not in proc.stderr, "no advice to add what the user removed"


def test_an_unquoted_value_outside_ascii_is_told_to_be_quoted(run_tipi: RunTipi) -> None:
    proc = run_tipi("run.name=épreuve_日本語")
    assert proc.returncode == 1
    assert "a value with characters outside ASCII must be quoted" in proc.stderr
    assert '''"run.name='épreuve_日本語'"''' in proc.stderr and "LexerNoViableAlt" not in proc.stderr


def test_without_the_test_step_the_warning_says_what_the_objective_will_be(run_tipi: RunTipi) -> None:
    proc = run_tipi(*FAST, "~processes.test", "processes.train.epochs=1", check=True)
    assert "run.objective 'test/mean_iou' is logged by no process of this pipeline: the run's objective will be " \
           "the number processes.result returns, or none if it returns no number; set run.objective to a metric " \
           "it logs (" in proc.stdout + proc.stderr
    assert "val/mean_iou" in (proc.stdout + proc.stderr).split("set run.objective to a metric it logs (")[1]
