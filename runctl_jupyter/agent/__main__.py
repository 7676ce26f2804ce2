"""`python -m runctl_jupyter.agent RUN_DIR [--attempt N] [--daemon]`."""

import sys

from .supervise import main

sys.exit(main())
