"""A name from outside (an S3 key, a bundle member) as a path that stays in its folder.

Restoring checkpoints, staging `--data` and unpacking a bundle all write, as root on
an instance, where a name someone else chose says. `path_under` is the one check:
no absolute name, no `..`, and nothing that resolves outside the folder (through a
symlink already in it either). `extract_bundle` unpacks a tar with it: tarfile's
`data` filter where this Python has it, else the same refusals by hand. Stdlib only,
and self-contained: the boot script sends this module's text to the instance.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath

REFUSED_FILE = ".refused-keys.json"  # what a restore left out; the agent reports each line


class UnsafePath(ValueError):
    """A name that would land outside its folder."""


def path_under(root: str | os.PathLike, name: str) -> Path:
    """`root/name`, or UnsafePath when `name` is empty, absolute, has a `..` part, or
    resolves (following symlinks already there) outside `root`."""
    parts = PurePosixPath(name).parts
    if not parts or parts[0] == "/" or ".." in parts:
        raise UnsafePath(f"{name!r} is not a plain relative name (absolute, empty or with ..)")
    base = Path(root).resolve()
    target = base.joinpath(*parts)
    try:
        inside = target.resolve().is_relative_to(base)
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise UnsafePath(f"{name!r} resolves outside {base} (through a symlink)")
    return target


def checked_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """What tarfile's `data` filter would let through, for a Python without it: plain
    files and folders only (runctl's bundles hold nothing else), under `dest`, with no
    setuid bits and no owner from the archive."""
    if not (member.isfile() or member.isdir()):
        raise UnsafePath(f"bundle member {member.name!r} is a link or device: refused")
    path_under(dest, member.name)
    member.mode &= 0o755
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    return member


def extract_bundle(archive: str | os.PathLike, dest: str) -> None:
    """Unpack a bundle into `dest`; UnsafePath (nothing written) for a member that would
    land outside it or is not a plain file or folder."""
    with tarfile.open(archive) as tar:
        members = [checked_member(m, dest) for m in tar.getmembers()]
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:  # Python < 3.10.12 / 3.11.4: the checks above are the filter
            tar.extractall(dest, members=members)
