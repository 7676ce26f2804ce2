"""runctl-jupyter: cost-aware training runs from JupyterLab.

`%load_ext runctl_jupyter` registers the `%runctl` / `%%runctl` magic. Heavy
modules (plotly, ipywidgets, boto3, cloudpickle) are imported only when used.
"""

from __future__ import annotations

__all__ = ["__version__", "load_ipython_extension"]


def __getattr__(name: str):  # noqa: ANN202 - module attribute hook
    # `from runctl_jupyter import runctl` in a script: the in-run object, imported only
    # when asked for, so `%load_ext runctl_jupyter` stays light (the version too).
    if name == "runctl":
        from .runtime import runctl

        return runctl
    if name == "__version__":
        from ._version import __version__

        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython):  # noqa: ANN001 - IPython's own signature
    from .magics import RunctlMagics, register_completer, register_help_transformer

    ipython.register_magics(RunctlMagics(shell=ipython))
    register_completer(ipython)  # tab completion on %runctl / %%runctl lines
    register_help_transformer(ipython)  # `%runctl train?` shows train's options


def _jupyter_server_extension_points() -> list[dict]:
    # the /runctl/api/ endpoints of the lab sidebar (runctl_jupyter/server/)
    return [{"module": "runctl_jupyter.server"}]


def _jupyter_labextension_paths() -> list[dict]:
    # the prebuilt lab extension, built from labextension/ into runctl_jupyter/labextension/
    return [{"src": "labextension", "dest": "runctl-jupyter"}]
