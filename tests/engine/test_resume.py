"""Tests for resuming a job (exporter.engine.job) after its process was killed."""

from __future__ import annotations

import os
import signal
import time

from runs import (
    POLL_SECONDS,
    RUN_TIMEOUT,
    START_TIMEOUT,
    Corpus,
    assert_complete,
    finish,
    has_dicom,
    kill_when,
    plant_partial_writes,
    start,
    tasks_done,
)

# Tests -------------------------------------------------------------------------


class TestResume:
    def test_reference_is_complete(self, corpus: Corpus):
        """The uninterrupted run exported every instance of every study."""
        dicom = [p for p in corpus.reference if p.endswith(".dcm")]
        assert len(dicom) == corpus.instances
        assert {"provenance.json", "reconciliation.csv"} <= set(corpus.reference)

    def test_resume_after_sigkill(self, fresh: Corpus):
        """Killed once mid-export, the rerun yields the uninterrupted export exactly."""
        ws = fresh.workspace("killed-once")
        command = fresh.command(ws)

        kill_when(command, fresh.out, lambda: has_dicom(fresh.out))
        assert len(list(fresh.out.rglob("*.dcm"))) < fresh.instances
        plant_partial_writes(fresh.out)
        finish(command)

        assert_complete(fresh, ws)

    def test_resume_after_repeated_kills(self, fresh: Corpus):
        """Killed at the start, after one study and after half: still identical."""
        ws = fresh.workspace("killed-thrice")
        command = fresh.command(ws)

        kill_when(command, fresh.out, lambda: has_dicom(fresh.out))
        one_more = tasks_done(ws) + 1
        kill_when(command, fresh.out, lambda: tasks_done(ws) >= one_more)
        half = max(fresh.studies // 2, tasks_done(ws) + 1)
        kill_when(command, fresh.out, lambda: tasks_done(ws) >= half)
        assert tasks_done(ws) < fresh.studies
        finish(command)

        assert_complete(fresh, ws)

    def test_second_run_does_no_work(self, fresh: Corpus):
        """The same command twice: the same export, and the second writes no file."""
        ws = fresh.workspace("twice")
        command = fresh.command(ws)

        first = finish(command)
        files = {p: p.stat() for p in fresh.out.rglob("*.dcm")}
        second = finish(command)

        assert_complete(fresh, ws)
        # os.replace gives every rewritten file a new inode.
        now = {p: p.stat() for p in fresh.out.rglob("*.dcm")}
        assert {p: (s.st_ino, s.st_mtime_ns) for p, s in now.items()} == {
            p: (s.st_ino, s.st_mtime_ns) for p, s in files.items()
        }
        assert second < first

    def test_ctrl_c_stops_cleanly_and_resumes(self, fresh: Corpus):
        """Ctrl-C (SIGINT to the group): exit 130, one line, and the rerun completes."""
        ws = fresh.workspace("interrupted")
        command = fresh.command(ws)
        proc = start(command)
        deadline = time.monotonic() + START_TIMEOUT
        while not has_dicom(fresh.out):
            assert proc.poll() is None, "the run finished before Ctrl-C"
            assert time.monotonic() < deadline, f"no file within {START_TIMEOUT} s"
            time.sleep(POLL_SECONDS)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT)

        assert proc.returncode == 130
        assert stderr.decode().splitlines()[-1] == (
            "interrupted: finished studies are kept; run the same command to resume"
        )
        finish(command)
        assert_complete(fresh, ws)
