"""environment.py: env.json facts from a real interpreter, a real git repo, a stand-in nvidia-smi."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runctl_jupyter.environment import (
    capture_environment,
    host_facts,
    installed_packages,
    strip_credentials,
)

REPO = Path(__file__).resolve().parents[1]


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "trainbranch")
    git(root, "config", "user.email", "a@b.c")
    git(root, "config", "user.name", "A")
    (root / "train.py").write_text("print(1)\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "first")
    git(root, "remote", "add", "origin", "https://ann:ghp_SECRETTOKEN@github.com/ann/proj.git")
    (root / "notebooks").mkdir()
    return root


def test_packages_match_importlib_metadata():
    packages = installed_packages()
    for name in ("numpy", "ipython", "scikit-learn", "cloudpickle"):
        assert packages[name] == importlib.metadata.version(name)


def test_git_commit_branch_remote_without_credentials(repo: Path):
    env = capture_environment(repo / "notebooks", {})
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    assert env["git"]["commit"] == head
    assert env["git"]["branch"] == "trainbranch"
    assert env["git"]["dirty"] is False
    assert env["git"]["remote"] == "https://github.com/ann/proj.git"
    assert "SECRETTOKEN" not in json.dumps(env)


def test_dirty_flag_and_changed_files(repo: Path):
    (repo / "train.py").write_text("print(2)\n")
    env = capture_environment(repo, {})
    assert env["git"]["dirty"] is True
    assert env["git"]["changed"] == ["train.py"]


def test_no_repo_means_no_git(tmp_path: Path):
    assert capture_environment(tmp_path, {})["git"] is None


def test_repo_without_commits(tmp_path: Path):
    git(tmp_path, "init", "-q")
    info = capture_environment(tmp_path, {})["git"]
    assert info["commit"] is None and info["root"] == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:tok@github.com/a/b.git", "https://github.com/a/b.git"),
        ("https://x-access-token:abc@github.com:8443/a/b", "https://github.com:8443/a/b"),
        ("https://tokenonly@gitlab.com/a/b.git?private_token=zz", "https://gitlab.com/a/b.git"),
        ("git@github.com:a/b.git", "git@github.com:a/b.git"),
        ("ssh://git@host/a/b.git", "ssh://git@host/a/b.git"),
        ("ssh://git:pw@host/a/b.git", "ssh://host/a/b.git"),
    ],
)
def test_strip_credentials(url: str, expected: str):
    assert strip_credentials(url) == expected


def test_seeds_are_found_in_params_and_env_vars_are_never_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "sk-verysecretvalue")
    env = capture_environment(tmp_path, {"seed": 7, "data_seed": 1, "lr": 0.1})
    assert env["seeds"] == {"seed": 7, "data_seed": 1}
    text = json.dumps(env)
    assert "sk-verysecretvalue" not in text and "MY_API_KEY" not in text


def test_python_os_hardware_and_time(tmp_path):
    env = capture_environment(tmp_path, {})
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["python"]["executable"] == sys.executable
    assert env["os"]["system"] and env["cpu_count"] == os.cpu_count()
    assert abs(env["time"]["t"] - time.time()) < 60
    json.dumps(env)  # env.json must serialize


def test_gpus_from_nvidia_smi(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'test "$1" = "--query-gpu=name,memory.total" || exit 3\n'
        'echo "NVIDIA A10G, 23028 MiB"\necho "NVIDIA A10G, 23028 MiB"\n'
    )
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    expected = [{"name": "NVIDIA A10G", "memory": "23028 MiB"}] * 2
    assert capture_environment(tmp_path, {})["gpus"] == expected
    assert host_facts()["gpus"] == expected


def test_no_gpu_is_an_empty_list(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi (and no git) here
    env = capture_environment(tmp_path, {})
    assert env["gpus"] == [] and env["git"] is None


def test_host_facts_are_stdlib_only():
    script = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "from runctl_jupyter.environment import host_facts\n"
        "facts = host_facts()\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new - set(sys.stdlib_module_names) - {'runctl_jupyter'})))\n"
        "print(json.dumps(facts))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    third_party, facts = (json.loads(line) for line in out.stdout.splitlines())
    assert third_party == []
    assert facts["hostname"] and facts["python"]["version"]


def test_capture_is_fast(repo: Path):
    capture_environment(repo, {})  # warm the import caches
    start = time.perf_counter()
    capture_environment(repo, {})
    assert time.perf_counter() - start < 1.0  # typically ~15 ms; a loose guard, not a benchmark


def test_a_recent_capture_of_the_same_folder_is_reused_with_this_runs_seeds(tmp_path):
    from runctl_jupyter.environment import capture_environment

    first = capture_environment(tmp_path, {"seed": 1})
    again = capture_environment(tmp_path, {"seed": 2, "lr": 0.1}, reuse=first)
    assert again["packages"] is first["packages"] and again["seeds"] == {"seed": 2}
    other = capture_environment(tmp_path / "elsewhere", {}, reuse=first)
    assert other["workdir"].endswith("elsewhere")
