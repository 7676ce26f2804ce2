"""A real container runtime for the tests: rootful podman, set up for this sandbox.

Nothing outside package registries is reachable, so no base image can be pulled: the
base image is imported (`podman import`) from a tarball of this machine's own Python
(its binary, its standard library, the shared libraries they load), at the paths it
has here. The sandbox's settings live in a containers.conf and a storage.conf of the
test session (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF), never in runctl's argv:
- storage driver vfs (no overlay mounts here);
- runc (crun refuses the machine's hybrid cgroups: "cgroups in hybrid mode not
  supported"), cgroup manager cgroupfs, events to a file (no systemd);
- default ulimits no higher than the sandbox's (podman's default nofile=1048576 fails:
  "error setting rlimit type 7: operation not permitted", no CAP_SYS_RESOURCE).
"""

from __future__ import annotations

import glob
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
from pathlib import Path

import pytest

BASE_IMAGE = "localhost/runctl-test-base:1"
SKIP_STDLIB = {
    "site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo",
    "ensurepip", "lib2to3", "pydoc_data", "__pycache__",
}


def write_config(folder: Path) -> dict[str, str]:
    """containers.conf and storage.conf for this sandbox; the environment naming them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "containers.conf").write_text(
        "[containers]\n"
        'default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
    )
    (folder / "storage.conf").write_text(
        "[storage]\n"
        'driver = "vfs"\n'
        f'runroot = "{folder / "run"}"\n'
        f'graphroot = "{folder / "graph"}"\n'
    )
    return {
        "CONTAINERS_CONF": str(folder / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(folder / "storage.conf"),
    }


def _libraries(paths: list[str]) -> set[str]:
    """The shared libraries (and the loader) these binaries load, from `ldd`."""
    out = subprocess.run(["ldd", *paths], capture_output=True, text=True).stdout
    return set(re.findall(r"(/\S+\.so[.\d]*)\s", out + "\n"))


def python_rootfs() -> bytes:
    """A tar of this machine's Python: enough to run `python3 -m runctl_jupyter.agent.runner`."""
    exe = os.path.realpath(sys.executable)
    stdlib = sysconfig.get_paths()["stdlib"]
    files: list[str] = [exe]
    for root, dirs, names in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in SKIP_STDLIB]
        files += [os.path.join(root, n) for n in names if "tkinter" not in n]
    modules = [f for f in files if f.endswith(".so")]
    libraries = _libraries([exe, *modules])
    gcc = subprocess.run(["gcc", "-print-file-name=libgcc_s.so.1"], capture_output=True, text=True)
    found = [p for p in (gcc.stdout.strip(), *glob.glob("/lib/*/libgcc_s.so.1")) if os.path.isabs(p)]
    libraries |= set(found[:1])  # glibc loads it for pthread_exit (threads ending)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(set(files) | libraries):
            tar.add(os.path.realpath(path), arcname=path.lstrip("/"), recursive=False)
        for name in ("usr/bin/python3", "usr/bin/python"):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, exe
            tar.addfile(link)
        for folder in ("tmp", "proc", "dev", "sys", "etc"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
    return buf.getvalue()


def import_base(env: dict[str, str], folder: Path) -> str:
    """`podman import` the Python rootfs as BASE_IMAGE (once per storage)."""
    full = {**os.environ, **env}
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=full).returncode == 0:
        return BASE_IMAGE
    tar = folder / "rootfs.tar"
    tar.write_bytes(python_rootfs())
    subprocess.run(
        ["podman", "import", str(tar), BASE_IMAGE], env=full, check=True, capture_output=True
    )
    tar.unlink()
    return BASE_IMAGE


@pytest.fixture(scope="session")
def podman(tmp_path_factory):
    """Rootful podman with this sandbox's settings; the base image imported once."""
    folder = tmp_path_factory.mktemp("podman")
    env = write_config(folder)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import_base(env, folder)
    yield env
    left = subprocess.run(["podman", "ps", "--all", "--quiet"], capture_output=True, text=True)
    subprocess.run(["podman", "rm", "--force", "--all"], capture_output=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    assert not left.stdout.strip(), f"containers left behind: {left.stdout}"


@pytest.fixture
def dockerfile(tmp_path):
    """A Dockerfile FROM the imported base: a file copied in, a RUN step, an ENV."""
    folder = tmp_path / "image-src"
    folder.mkdir()
    (folder / "marker.txt").write_text("from the image\n")
    (folder / "Dockerfile").write_text(
        textwrap.dedent(f"""\
        FROM {BASE_IMAGE}
        COPY marker.txt /opt/marker.txt
        RUN ["python3", "-c", "open('/opt/built', 'w').write('built')"]
        ENV IMAGE_MARK=yes
        """)
    )
    return folder / "Dockerfile"
