"""`--image NAME|Dockerfile`: the user's code runs in a container; the agent stays on the host.

Only the agent's child (the runner, or torchrun) is wrapped, so spot notices, Stop,
cost limits and the S3 sync work exactly as without an image:

    podman|docker run --rm --init --name runctl-RUN-ATTEMPT
        -v RUN:RUN -v WORKDIR:WORKDIR -v PACKAGE:PACKAGE:ro -v MOUNT:MOUNT ...
        -w WORKDIR --env NAME ... [--gpus all | --device nvidia.com/gpu=all]
        [--network host] [--user UID:GID] IMAGE python3 -m runctl_jupyter.agent.runner RUN

Every folder is mounted at the path it has on the host, so the run folder, its
checkpoints, the workdir and data volumes are where the code finds them without a
container. Environment variables are passed by name only (`--env NAME`: the runtime
reads the value from its own environment), so no value sits in an argv. A Stop
signals the container by name (`kill --signal`): `--init` hands it to the code.

A Dockerfile was copied into the run folder at launch (`image/`); it is built here,
on the machine that runs the code, tagged `localhost/runctl-build:DIGEST` (the digest
of the Dockerfile and its build context), and not built again while that tag exists.
Stdlib only: shipped to instances.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

Tick = Callable[[], bool]

RUNTIMES = ("podman", "docker")  # podman first: daemonless; the Deep Learning AMI has docker only
BUILD_REPO = "localhost/runctl-build"
IMAGE_FOLDER = "image"  # in the run folder: the Dockerfile and its build context
BUILD_LOG = "image-build.log"
CONTAINER_PYTHON = "python3"
# What the code sees of the host's environment besides what the agent sets for it.
PASSED_PREFIXES = ("RUNCTL_", "AWS_", "CUDA_", "NCCL_", "TORCH_", "HF_", "OMP_")
PASSED_NAMES = ("PYTHONUNBUFFERED", "PYTHONPATH", "TZ", "LANG")
TAIL_LINES = 20


class ContainerError(OSError):
    """The container cannot start (no runtime, no image, a failed build): one line, the
    run fails with it (an OSError, as the agent treats a child that cannot start)."""


def find_runtime(preferred: str | None = None) -> str | None:
    """The runtime's command: `preferred` ("docker"/"podman") if installed, else podman, else docker."""
    names = (preferred,) if preferred and preferred != "auto" else RUNTIMES
    for name in names:
        if name and shutil.which(name):
            return name
    return None


def missing_runtime_line(preferred: str | None = None) -> str:
    if preferred and preferred != "auto":
        return f"--image needs {preferred}, which is not installed here: install it, or drop --image"
    return "--image needs docker or podman: install one (e.g. apt-get install podman), or drop --image"


def container_name(run_id: str, attempt: int) -> str:
    safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in run_id)
    return f"runctl-{safe}-{attempt}"


def has_gpus(root: str = "/") -> bool:
    """NVIDIA devices on this machine (what `--gpus all` would hand to the container)."""
    return bool(glob.glob(os.path.join(root, "dev", "nvidia[0-9]*")))


def passed_env(env: dict[str, str], added: set[str]) -> list[str]:
    """The names handed to the container: what the agent set for the run, and the
    host's AWS/CUDA/NCCL/... settings; never PATH or HOME (the image has its own)."""
    names = [
        k for k in env if k in added or k in PASSED_NAMES or k.startswith(PASSED_PREFIXES)
    ]
    return sorted(set(names))


def mounts_for(spec: dict, run_dir: Path, package_parent: str, workdir: str) -> list[str]:
    """The folders mounted at their own paths: the run folder (checkpoints are in it),
    the workdir, the package (read-only), a script's folder, the targets of the
    workdir's links (a `--volume`'s mount point, data) and `options.mounts`."""
    paths = [str(run_dir), workdir]
    script = spec.get("script_path")
    if script:
        paths.append(str(Path(script).parent))
    for folder in (Path(workdir), run_dir / "work"):
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.is_symlink():
                    paths.append(str(entry.resolve()))
    if spec.get("data_mount"):  # the data volume (--data-size, --volume): RUNCTL_DATA_DIR
        paths.append(str(spec["data_mount"]))
    paths += [str(p) for p in (spec.get("options") or {}).get("mounts") or ()]
    out: list[str] = []
    for p in dict.fromkeys(os.path.abspath(p) for p in paths):
        if os.path.exists(p):
            out.append(f"{p}:{p}")
    out.append(f"{package_parent}:{package_parent}:ro")
    return out


def wrap(
    argv: list[str],
    env_names: list[str],
    *,
    runtime: str,
    image: str,
    name: str,
    workdir: str,
    mounts: list[str],
    gpus: bool = False,
    network: str | None = None,
    user: str | None = None,
) -> list[str]:
    """The `run` command that runs `argv` in `image` (docs: docker run / podman-run(1))."""
    cmd = [runtime, "run", "--rm", "--init", "--name", name]
    for mount in mounts:
        cmd += ["-v", mount]
    cmd += ["-w", workdir]
    for env_name in env_names:
        cmd += ["--env", env_name]
    if gpus:  # docker: the NVIDIA container toolkit; podman: its CDI spec
        cmd += ["--gpus", "all"] if runtime == "docker" else ["--device", "nvidia.com/gpu=all"]
    if network:
        cmd += ["--network", network]
    if user:
        cmd += ["--user", user]
    return [*cmd, image, *argv]


def _run(cmd: list[str], log: Path | None = None, timeout: float | None = None) -> tuple[int, str]:
    try:
        proc = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, str(exc)
    out = (proc.stdout or "") + (proc.stderr or "")
    if log is not None:
        with open(log, "a") as f:
            f.write(f"$ {' '.join(cmd)}\n{out}")
    return proc.returncode, out


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def image_exists(runtime: str, image: str) -> bool:
    return _run([runtime, "image", "inspect", image], timeout=60)[0] == 0


def _run_ticking(cmd: list[str], log: Path, tick: Tick | None) -> tuple[int, str]:
    """A pull or a build, its output appended to `log`; `tick()` about every second (the
    agent's heartbeat and Stop); a False from it ends the command. The output back."""
    with open(log, "ab") as f:
        f.write(f"$ {' '.join(cmd)}\n".encode())
        f.flush()  # before the command writes to the same file
        start = f.tell()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        except OSError as exc:
            return 1, str(exc)
        while True:
            try:
                code = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if tick is not None and not tick():
                    proc.terminate()
                    proc.wait()
                    raise ContainerError("stopped while the image was being prepared") from None
    with open(log, "rb") as f:
        f.seek(start)
        return code, f.read().decode(errors="replace")


def ensure_image(runtime: str, image: str, log: Path | None = None, tick: Tick | None = None) -> None:
    """The image is here, or pulled; else one line."""
    if image_exists(runtime, image):
        return
    if log is None:
        code, out = _run([runtime, "pull", image])
    else:
        code, out = _run_ticking([runtime, "pull", image], log, tick)
    if code != 0:
        raise ContainerError(
            f"image {image} does not exist here and cannot be pulled: {_last_line(out)}"
        )


def context_digest(folder: Path) -> str:
    """sha256 over the build context: every file's relative path and bytes, in order."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            h.update(path.relative_to(folder).as_posix().encode() + b"\0")
            h.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
            h.update(b"\0")
    return h.hexdigest()


def build_image(
    runtime: str, context: Path, dockerfile: str, log: Path, tick: Tick | None = None,
    cache: tuple[str, str | None] | None = None, say: Callable[[str], None] | None = None,
) -> str:
    """Build the Dockerfile unless its tag exists already (here, or in the ECR repository
    `cache`: pulled, agent/ecr.py); a failure's last 20 lines. A cache that cannot be
    used or a failed push is a warning (`say`), never a failed run."""
    tag = f"{BUILD_REPO}:{context_digest(context)[:32]}"
    if image_exists(runtime, tag):
        with open(log, "a") as f:
            f.write(f"{tag} exists: not built again\n")
        return tag

    def warn(line: str) -> None:
        with open(log, "a") as f:
            f.write(f"warning: {line}\n")
        if say is not None:
            say(f"runctl: warning: {line}")

    def step(cmd: list[str], to: Path) -> tuple[int, str]:
        return _run_ticking(cmd, to, tick)

    if cache is not None:
        from . import ecr

        try:
            if ecr.pull(runtime, cache, tag, log, step):
                return tag
        except ecr.CacheMiss as exc:
            warn(f"{exc}; building the image here")
    cmd = [runtime, "build", "-t", tag, "-f", str(context / dockerfile), str(context)]
    code, out = _run_ticking(cmd, log, tick)
    if code != 0:
        tail = "\n".join(out.rstrip().splitlines()[-TAIL_LINES:])
        raise ContainerError(f"the Dockerfile failed to build (last {TAIL_LINES} lines):\n{tail}")
    if cache is not None:
        try:
            ecr.push(runtime, cache, tag, log, step)
        except ecr.CacheMiss as exc:
            warn(f"the image was not cached in ECR: {exc}")
    return tag


def prepare_image(
    spec: dict, run_dir: Path, tick: Tick | None = None, say: Callable[[str], None] | None = None
) -> str:
    """The image to run: a name (pulled if missing) or the run folder's Dockerfile, built.
    Raises ContainerError (no runtime, no image, a failed build, a Stop meanwhile)."""
    options = spec.get("options") or {}
    runtime = find_runtime(options.get("container_runtime"))
    if runtime is None:
        raise ContainerError(missing_runtime_line(options.get("container_runtime")))
    log = run_dir / BUILD_LOG
    build = options.get("image_build")
    if build:
        from .ecr import settings

        return build_image(
            runtime, run_dir / IMAGE_FOLDER, build["dockerfile"], log, tick, settings(spec), say
        )
    image = str(options["image"])
    ensure_image(runtime, image, log, tick)
    return image


def container_command(
    spec: dict, run_dir: Path, attempt: int, argv: list[str], env: dict[str, str],
    added: set[str], workdir: str, package_parent: str,
) -> tuple[list[str], str, str]:
    """The wrapped argv, the runtime and the container's name (raises ContainerError)."""
    options = spec.get("options") or {}
    runtime = find_runtime(options.get("container_runtime"))
    if runtime is None:
        raise ContainerError(missing_runtime_line(options.get("container_runtime")))
    image = options.get("image_tag") or prepare_image(spec, run_dir)  # the agent prepared it
    name = container_name(spec["run_id"], attempt)
    _run([runtime, "rm", "--force", name], timeout=120)  # an earlier agent's leftover of this attempt
    user = None
    if runtime == "docker" and os.getuid() != 0:  # files in the run folder stay the user's
        user = f"{os.getuid()}:{os.getgid()}"
    cmd = wrap(
        argv,
        passed_env(env, added),
        runtime=runtime,
        image=image,
        name=name,
        workdir=workdir,
        mounts=mounts_for(spec, run_dir, package_parent, workdir),
        gpus=has_gpus(),
        network=options.get("container_network") or None,
        user=user,
    )
    return cmd, runtime, name


def remove(preferred: str | None, run_id: str, attempt: int) -> None:
    """The attempt's ended container removed (`rm --force`; nothing if it is gone)."""
    runtime = find_runtime(preferred)
    if runtime is not None:
        _run([runtime, "rm", "--force", container_name(run_id, attempt)], timeout=120)


def signal_container(runtime: str, name: str, signame: str) -> bool:
    """`kill --signal TERM|KILL NAME` (docker kill / podman-kill(1)); False when it did not reach."""
    return _run([runtime, "kill", "--signal", signame, name], timeout=30)[0] == 0
