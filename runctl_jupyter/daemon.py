"""Start a runctl process detached: `python -m runctl_jupyter.daemon MODULE ARGS...`.

It forks before importing anything else, so the launcher (a kernel, a sweep
scheduler) waits only for a bare Python start-up, not for the agent's imports.
The child starts a new session and runs MODULE as __main__: it outlives the
launcher and is nobody's child (no zombie left behind).
"""

import os
import runpy
import sys


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m runctl_jupyter.daemon MODULE [ARGS...]")
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
