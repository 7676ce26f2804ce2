"""The jupyter_server extension behind the lab sidebar: JSON endpoints under
/runctl/api/ over the same store the magics use (api.py holds the logic,
handlers.py the thin web layer). Enabled on install by
jupyter-config/server-config/runctl_jupyter.json.

Settings: `c.Runctl.home` etc. in jupyter_server_config.py apply here too.
"""

from __future__ import annotations

from typing import Any


def _load_jupyter_server_extension(server_app: Any) -> None:
    from ..config import Runctl
    from .api import LabAPI
    from .handlers import setup_handlers
    from .saving import pre_save_hook

    api = LabAPI(Runctl(parent=server_app))
    setup_handlers(server_app.web_app, api)
    # a saved notebook keeps runctl's live widgets as their static fallback (saving.py)
    server_app.contents_manager.register_pre_save_hook(pre_save_hook)
    server_app.log.info("runctl: /runctl/api/ serves the store at %s", api.store.home)


load_jupyter_server_extension = _load_jupyter_server_extension
