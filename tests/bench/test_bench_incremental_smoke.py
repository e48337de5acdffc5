"""bench/bench_incremental.py --quick on a few MB, so the harness cannot rot
unnoticed: real volumes, our full + 2 incrementals, restic (when installed)
and tar, both restores checked against the final tree. Its figures mean
nothing at this size; only that it runs and that what it checks holds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, subprocess_env

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_quick_run_completes_and_checks_the_restored_trees(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    args = ["--quick", "--dir", str(tmp_path / "work"), "--json-out", str(figures)]
    if shutil.which("restic") is None:
        args.append("--no-restic")
    done = subprocess.run(
        [sys.executable, "bench/bench_incremental.py", *args], cwd=REPO_ROOT,
        env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "| ours |" in done.stdout and "restore ratio" in done.stdout
    out = json.loads(figures.read_text())
    assert [link["kind"] for link in out["chain"]] == ["incremental", "incremental"]
    assert [link["position"] for link in out["chain"]] == [1, 2]
    assert out["summary"]["same_as_final"] is True
    for tool in out["full"]:  # every tool's second backup added less than its full
        assert 0 < out["second"][tool]["size"] < out["full"][tool]["size"], tool
    assert out["data"]["files"] >= 300
    assert not (tmp_path / "work").exists()  # the bench tidies its work dir
