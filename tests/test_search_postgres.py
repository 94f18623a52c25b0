"""Many machines on one PostgreSQL study: two worker processes, then one of them killed.

Needs a server: set SPBENCH_TEST_POSTGRES (`.ci/run` starts one with `.ci/postgres.sh`).
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from tests.test_search import SPACE, poll_states, write_space

URL = os.environ.get("SPBENCH_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not URL, reason="SPBENCH_TEST_POSTGRES is not set (no PostgreSQL server)")
ROOT = Path(__file__).parent.parent


def worker(tmp_path, tiny_models, tiny_tasks, study: str, trials: int, steps: int, name: str) -> subprocess.Popen:
    """One `spbench search` process, as each machine would run it (own results folder)."""
    argv = [sys.executable, "-m", "bench.cli", "search", "--task", "tiny_cls", "--model", tiny_models["gpt2"][0],
            "--trials", str(trials), "--space", str(write_space(tmp_path, SPACE)), "--steps", str(steps),
            "--batch-size", "4", "--eval-every", "2", "--monitor-size", "4", "--eval-size", "4", "--pruner", "none",
            "--results", str(tmp_path / name), "--tasks-dir", str(tiny_tasks), "--study", study, "--storage", URL]
    env = {**os.environ, "SPBENCH_HEARTBEAT_SECONDS": "1"}
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def load(study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=URL)


def test_two_workers_share_one_study(tmp_path, tiny_models, tiny_tasks):
    study = f"pg-{uuid.uuid4().hex[:8]}"
    workers = [worker(tmp_path, tiny_models, tiny_tasks, study, 6, 4, f"machine{i}") for i in range(2)]
    for process in workers:
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output
    trials = load(study).trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6
    assert len({t.number for t in trials}) == len(trials)
    assert {t.user_attrs["records"][0] for t in complete}.__len__() == 6  # each trial ran once, in one place


def test_killed_worker_leaves_its_trial_failed(tmp_path, tiny_models, tiny_tasks):
    study = f"pg-{uuid.uuid4().hex[:8]}"
    doomed = worker(tmp_path, tiny_models, tiny_tasks, study, 5, 12, "doomed")
    deadline = time.time() + 300
    while time.time() < deadline:
        states = poll_states(lambda: load(study))
        if "COMPLETE" in states and states[-1] == "RUNNING":
            break
        time.sleep(0.3)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()
    time.sleep(4)  # heartbeat grace period passes
    survivor = worker(tmp_path, tiny_models, tiny_tasks, study, 5, 12, "survivor")
    output = survivor.communicate(timeout=600)[0]
    assert survivor.returncode == 0, output
    states = [t.state.name for t in load(study).trials]
    assert states.count("COMPLETE") == 5 and "FAIL" in states
