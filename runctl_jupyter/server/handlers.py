"""Thin tornado handlers under /runctl/api/: parse the request, call LabAPI in a
worker thread (the store does file and SQLite I/O; the server's event loop never
waits on it), answer JSON. Domain errors become 4xx JSON: {"error", "message"}.

    GET  /runctl/api/runs?experiment=&status=&project=&sweep=&owner=&limit=&offset=&spark=
    GET  /runctl/api/runs/<ref>?max_points=
    POST /runctl/api/runs/<ref>/stop            {"force": false}
    POST /runctl/api/runs/<ref>/open-record     -> {"path": <lab path of the record>}
    GET  /runctl/api/summary                    (status bar)
    GET  /runctl/api/resources
    GET  /runctl/api/cost

Every handler is authenticated, then authorized on the resource "runctl" (jupyter_server's
Authorizer): GETs need "read"; stop and open-record need "write" (open-record also
"write" on "contents": it saves a notebook through the contents manager), so a
deployment can give read-only users the sidebar without its buttons.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import ensure_async, url_path_join

from ..display.record_copy import RECORDS_FOLDER
from ..errors import AmbiguousRun, RunctlError, RunNotFound
from .api import BadRequest, LabAPI, RecordNotReady, RunNotActive

API_KEY = "runctl_api"
EXECUTOR_KEY = "runctl_executor"

_STATUS: list[tuple[type[Exception], int]] = [
    (RunNotFound, 404),
    (AmbiguousRun, 400),
    (BadRequest, 400),
    (RunNotActive, 409),
    (RecordNotReady, 409),
    (RunctlError, 400),
]


def _status_for(exc: Exception) -> int:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return 500


def _denied(what: str, permission: str) -> str:
    return (
        f"this user may not {what} here (the server's Authorizer does not grant {permission}): "
        "ask the server's administrator for that permission"
    )


class RunctlHandler(APIHandler):
    """Base: the shared LabAPI, a worker thread per call, errors as JSON."""

    auth_resource = "runctl"  # what @authorized asks the server's Authorizer about

    @property
    def api(self) -> LabAPI:
        return self.settings[API_KEY]

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        executor = self.settings[EXECUTOR_KEY]
        return await loop.run_in_executor(executor, lambda: fn(*args, **kwargs))

    def answer(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(payload, allow_nan=False, default=str))

    def fail(self, exc: Exception) -> None:
        status = _status_for(exc)
        if status == 500:
            self.log.exception("runctl API error")
        self.answer({"error": type(exc).__name__, "message": str(exc)}, status)

    def body(self) -> dict:
        if not self.request.body:
            return {}
        try:
            data = json.loads(self.request.body)
        except ValueError:
            raise BadRequest("the request body must be JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the request body must be a JSON object")
        return data


class RunsHandler(RunctlHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        arg = self.get_query_argument
        try:
            page = await self.call(
                self.api.runs,
                experiment=arg("experiment", None),
                status=arg("status", None),
                project=arg("project", None),
                sweep=arg("sweep", None),
                limit=arg("limit", None),
                offset=arg("offset", None),
                spark=arg("spark", "1") not in ("0", "false", "no"),
                owner=arg("owner", None),
            )
        except Exception as exc:
            return self.fail(exc)
        self.answer(page)


class RunHandler(RunctlHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self, ref: str) -> None:
        try:
            run = await self.call(self.api.run, ref, self.get_query_argument("max_points", None))
        except Exception as exc:
            return self.fail(exc)
        self.answer(run)


class StopHandler(RunctlHandler):
    @tornado.web.authenticated
    @authorized("write", message=_denied("stop runs", "write on runctl"))
    async def post(self, ref: str) -> None:
        try:
            force = self.body().get("force", False)
            if not isinstance(force, bool):
                raise BadRequest("force must be true or false")
            result = await self.call(self.api.stop, ref, force)
        except Exception as exc:
            return self.fail(exc)
        self.answer(result, 202)


class OpenRecordHandler(RunctlHandler):
    """The record lives in the run folder under RUNCTL_HOME, usually outside the
    server's root. If it is inside, its own path is answered; otherwise a copy is
    saved through the contents manager to `runctl-records/<name>-<id>.ipynb` (a
    normal notebook: it can be read, shared and rerun with `%runctl rerun PATH`)."""

    @tornado.web.authenticated
    @authorized("write", message=_denied("open records", "write on runctl"))
    @authorized(
        "write", resource="contents", message=_denied("save notebooks", "write on contents")
    )
    async def post(self, ref: str) -> None:
        try:
            run_id, source = await self.call(self.api.record, ref)
            root = Path(self.settings.get("server_root_dir", os.getcwd())).expanduser().resolve()
            try:
                inside = source.resolve().relative_to(root)
            except ValueError:
                inside = None
            if inside is not None:
                return self.answer({"path": inside.as_posix(), "copied": False, "run_id": run_id})
            _, name = await self.call(self.api.record_copy_name, run_id)
            path = f"{RECORDS_FOLDER}/{name}"
            content = await self.call(_read_notebook, source)
            cm = self.contents_manager
            if not await ensure_async(cm.dir_exists(RECORDS_FOLDER)):
                await ensure_async(cm.new({"type": "directory"}, RECORDS_FOLDER))
            model = {"type": "notebook", "format": "json", "content": content}
            await ensure_async(cm.save(model, path))
        except Exception as exc:
            return self.fail(exc)
        self.answer({"path": path, "copied": True, "run_id": run_id})


def _read_notebook(path: Path) -> Any:
    import nbformat

    return nbformat.read(str(path), as_version=4)


class SummaryHandler(RunctlHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        try:
            summary = await self.call(self.api.live_summary)
        except Exception as exc:
            return self.fail(exc)
        self.answer(summary)


class ResourcesHandler(RunctlHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        try:
            resources = await self.call(self.api.resources)
        except Exception as exc:
            return self.fail(exc)
        self.answer(resources)


class CostHandler(RunctlHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        try:
            cost = await self.call(self.api.cost)
        except Exception as exc:
            return self.fail(exc)
        self.answer(cost)


class ModelsHandler(RunctlHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        from .models_api import models_payload

        try:
            models = await self.call(models_payload, self.api.store)
        except Exception as exc:
            return self.fail(exc)
        self.answer(models)


class SchedulesHandler(RunctlHandler):
    @tornado.web.authenticated
    @authorized("read")
    async def get(self) -> None:
        from .schedules_api import schedules_payload

        try:
            schedules = await self.call(schedules_payload, self.api.session)
        except Exception as exc:
            return self.fail(exc)
        self.answer(schedules)


_REF = r"([^/]+)"


def setup_handlers(web_app: tornado.web.Application, api: LabAPI) -> None:
    """Register the /runctl/api/ routes on a running server's web app."""
    web_app.settings[API_KEY] = api
    web_app.settings[EXECUTOR_KEY] = ThreadPoolExecutor(max_workers=4, thread_name_prefix="runctl")
    base = url_path_join(web_app.settings["base_url"], "runctl", "api")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "runs"), RunsHandler),
            (url_path_join(base, "runs", _REF, "stop"), StopHandler),
            (url_path_join(base, "runs", _REF, "open-record"), OpenRecordHandler),
            (url_path_join(base, "runs", _REF), RunHandler),
            (url_path_join(base, "summary"), SummaryHandler),
            (url_path_join(base, "resources"), ResourcesHandler),
            (url_path_join(base, "cost"), CostHandler),
            (url_path_join(base, "models"), ModelsHandler),
            (url_path_join(base, "schedules"), SchedulesHandler),
        ],
    )
