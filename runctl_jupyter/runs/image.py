"""`--image NAME|Dockerfile` before launch: what is checked in the notebook, and what the
run folder carries for the agent (agent/container.py runs the code in the container).

A Dockerfile (a path whose name is or ends with `Dockerfile`, or any existing file)
and its folder, the build context, are copied into the run folder as `image/`, so
the machine that runs the code (this one, or the instance) builds it there. A local
run needs docker or podman here, and a named image present or pullable: refused in
one line before anything is written otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..agent import container
from ..errors import RunctlError

MAX_CONTEXT_MB = 200
SKIPPED = (".git", "__pycache__", ".ipynb_checkpoints", ".venv", "venv", "node_modules", ".runctl")


def is_dockerfile(value: str) -> bool:
    name = os.path.basename(value)
    return name.startswith("Dockerfile") or name.lower().endswith(".dockerfile") or (
        os.sep in value and os.path.isfile(value)
    )


def _context_size(folder: Path) -> int:
    total = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in SKIPPED]
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def image_options(
    options: dict[str, Any], backend: str, runtime: str = "auto", network: str = "auto"
) -> Path | None:
    """Check `options["image"]` and add what the agent needs (`image_build`,
    `container_runtime`, `container_network`); the Dockerfile to copy, if any."""
    image = options.get("image")
    if not image:
        return None
    image = str(image).strip()
    options["image"] = image
    if runtime == "auto" and backend != "local":
        runtime = "docker"  # the Deep Learning AMI's, with the NVIDIA container toolkit
    if runtime and runtime != "auto":
        options["container_runtime"] = runtime
    if network == "auto":
        network = "host" if backend != "local" else ""  # on AWS the code talks to IMDS and S3
    if network:
        options["container_network"] = network
    for name in ("pip", "requirements"):
        if options.get(name):  # `--pip none` ([]) asks for nothing: fine
            raise RunctlError(
                f"--{name} installs packages on the host, where the code does not run with "
                f"--image: install them in the image (its Dockerfile), or drop --{name}"
            )
    dockerfile: Path | None = None
    if is_dockerfile(image):
        dockerfile = Path(image).expanduser().resolve()
        if not dockerfile.is_file():
            raise RunctlError(f"--image {image}: no such Dockerfile (looked in {Path.cwd()})")
        size = _context_size(dockerfile.parent)
        if size > MAX_CONTEXT_MB * 1e6:
            raise RunctlError(
                f"--image {image}: its folder (the build context) holds {size / 1e6:.0f} MB: "
                f"put the Dockerfile in a folder with only what the image needs (<{MAX_CONTEXT_MB} MB)"
            )
        options["image_build"] = {"dockerfile": dockerfile.name}
    if backend == "local":
        found = container.find_runtime(runtime)
        if found is None:
            raise RunctlError(container.missing_runtime_line(runtime))
        if dockerfile is None:
            try:
                container.ensure_image(found, image)
            except container.ContainerError as exc:
                raise RunctlError(f"--image: {exc}") from None
    return dockerfile


def copy_context(dockerfile: Path, run_dir: Path) -> None:
    """The Dockerfile's folder into the run folder's `image/` (what the agent builds)."""
    shutil.copytree(
        dockerfile.parent,
        run_dir / container.IMAGE_FOLDER,
        ignore=shutil.ignore_patterns(*SKIPPED),
        symlinks=True,
    )


def copy_image_folder(source_run: Path, run_dir: Path) -> None:
    """A rerun of a Dockerfile run builds the same context: the source run's `image/`."""
    folder = source_run / container.IMAGE_FOLDER
    if folder.is_dir() and not (run_dir / container.IMAGE_FOLDER).exists():
        shutil.copytree(folder, run_dir / container.IMAGE_FOLDER, symlinks=True)
