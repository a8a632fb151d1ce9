"""The run-folder format (trbench.base.run_folder): what a reader accepts, and why it refuses."""

from __future__ import annotations

import json
import lzma

import pytest

from trbench.base import run_folder
from trbench.base.errors import UsageError
from trbench.base.run_folder import (
    ARCHIVED_PROGRESS_FILE,
    CHECKPOINT_FILE,
    PROGRESS_FILE,
    RunFolderError,
    archive_progress,
    is_imported_run,
    progress_text,
    read_complete_run,
    read_result,
    run_state,
    salvage_progress,
    store_run_files,
)

PROGRESS = "iteration,step,eval_return\n1,1024,\n2,2048,12.5\n"


def write_run(folder, status="complete", progress=PROGRESS, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config or {"run_id": folder.name, "algo": "trpo", "env_id": "E"}))
    (folder / PROGRESS_FILE).write_text(progress)
    (folder / "result.json").write_text(
        json.dumps({"status": status, "error": "boom" if status != "complete" else None})
    )
    return folder


def test_a_complete_run_reads_whole(tmp_path):
    run = read_complete_run(write_run(tmp_path / "r1"))
    assert run.run_id == "r1" and run.result["status"] == "complete"
    assert list(run.progress["step"]) == [1024, 2048]


@pytest.mark.parametrize(
    ("damage", "reason", "status"),
    [
        (lambda f: (f / "result.json").unlink(), "interrupted: result.json missing", "incomplete"),
        (lambda f: (f / "result.json").write_text("{"), "result.json unreadable", "unreadable"),
        (lambda f: (f / "config.json").write_text("[]"), "config.json is not a JSON object", "unreadable"),
        (lambda f: (f / PROGRESS_FILE).write_text(PROGRESS[:-3]), "progress.csv truncated", "unreadable"),
        (lambda f: (f / PROGRESS_FILE).write_bytes(b"\xff\xfe\n"), "not UTF-8 text", "unreadable"),
        (lambda f: (f / "config.json").write_text("{}"), "config.json has no algo", "unreadable"),
    ],
)
def test_a_damaged_run_is_refused_with_its_reason(tmp_path, damage, reason, status):
    folder = write_run(tmp_path / "r1")
    damage(folder)
    with pytest.raises(RunFolderError, match=reason) as raised:
        read_complete_run(folder)
    assert raised.value.status == status


def test_a_failed_run_is_refused_with_its_status_and_error(tmp_path):
    with pytest.raises(RunFolderError, match="diverged: boom") as raised:
        read_complete_run(write_run(tmp_path / "r1", status="diverged"))
    assert raised.value.status == "diverged"


def test_an_archived_progress_table_reads_as_the_same_bytes(tmp_path):
    folder = write_run(tmp_path / "r1")
    before = progress_text(folder)
    assert archive_progress(folder)
    assert not (folder / PROGRESS_FILE).exists()
    assert lzma.decompress((folder / ARCHIVED_PROGRESS_FILE).read_bytes()).decode() == before
    assert progress_text(folder) == before
    assert read_complete_run(folder).progress.equals(read_complete_run(write_run(tmp_path / "r2")).progress)
    assert not archive_progress(folder)  # nothing left to archive


def test_a_damaged_archive_is_refused(tmp_path):
    folder = write_run(tmp_path / "r1")
    archive_progress(folder)
    (folder / ARCHIVED_PROGRESS_FILE).write_bytes(b"not xz")
    with pytest.raises(RunFolderError, match="progress.csv.xz unreadable"):
        read_complete_run(folder)


def test_result_states(tmp_path):
    assert run_state(tmp_path / "none") == "missing"
    assert run_state(write_run(tmp_path / "ok")) == "complete"
    assert run_state(write_run(tmp_path / "bad", status="failed")) == "failed"
    (tmp_path / "ok" / "result.json").write_text("{")
    with pytest.raises(UsageError, match="unreadable result.json"):
        read_result(tmp_path / "ok")


def test_stored_files_end_with_the_result_and_drop_an_old_checkpoint(tmp_path, monkeypatch):
    folder = tmp_path / "r1"
    folder.mkdir()
    (folder / CHECKPOINT_FILE).write_bytes(b"old")
    (folder / "progress.csv.partial").write_text("stale")
    written = []
    real_write = run_folder.atomic_write_bytes
    monkeypatch.setattr(
        run_folder, "atomic_write_bytes", lambda path, data: (written.append(path.name), real_write(path, data))
    )
    store_run_files(folder, {"result.json": b"{}", "progress.csv": b"a\n", "config.json": b"{}"})
    assert written == ["config.json", "progress.csv", "result.json"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "progress.csv", "result.json"]


def test_salvage_keeps_the_complete_rows_of_a_dead_run(tmp_path):
    folder = tmp_path / "r1"
    folder.mkdir()
    (folder / "progress.csv.partial").write_text("iteration,step\n1,1024\n2,20")
    assert salvage_progress(folder) == "iteration,step\n1,1024\n"
    assert (folder / PROGRESS_FILE).read_text() == "iteration,step\n1,1024\n"
    assert not (folder / "progress.csv.partial").exists()


def test_an_imported_run_is_marked_by_its_source_block(tmp_path):
    mine = write_run(tmp_path / "mine")
    theirs = write_run(tmp_path / "theirs", config={"algo": "ppo", "env_id": "E", "source": {"library": "sb3"}})
    assert not is_imported_run(mine) and is_imported_run(theirs)
    assert not is_imported_run(tmp_path / "absent")
