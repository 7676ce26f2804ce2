"""A minimal Debug Adapter Protocol client over a socket: what VS Code does when it
attaches to debugpy (initialize, attach, setBreakpoints, configurationDone, then the
stopped event, stackTrace, scopes, variables, continue, disconnect).

Messages are JSON bodies after a `Content-Length: N\\r\\n\\r\\n` header
(https://microsoft.github.io/debug-adapter-protocol/overview#base-protocol). An
`attach` is answered only after `configurationDone`, so `send` does not wait and
`response` collects the answer later; events are kept in order as they come.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any


class DapClient:
    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.seq = 0
        self.buffer = b""
        self.events: list[dict] = []
        self.responses: dict[int, dict] = {}

    def close(self) -> None:
        self.sock.close()

    def send(self, command: str, **arguments: Any) -> int:
        self.seq += 1
        body = json.dumps(
            {"seq": self.seq, "type": "request", "command": command, "arguments": arguments}
        ).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return self.seq

    def request(self, command: str, **arguments: Any) -> dict:
        """Send and wait for the answer; a failed request fails the test with its message."""
        return self.response(self.send(command, **arguments))

    def response(self, seq: int) -> dict:
        deadline = time.monotonic() + self.timeout
        while seq not in self.responses:
            self._read_one(deadline)
        answer = self.responses.pop(seq)
        assert answer.get("success"), f"{answer.get('command')}: {answer.get('message')}"
        return answer.get("body") or {}

    def event(self, name: str) -> dict:
        """The first `name` event not taken yet (waiting for it)."""
        deadline = time.monotonic() + self.timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("event") == name:
                    return self.events.pop(i).get("body") or {}
            self._read_one(deadline)

    def _read_one(self, deadline: float) -> None:
        while b"\r\n\r\n" not in self.buffer:
            self._fill(deadline)
        header, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        length = next(
            int(line.split(b":", 1)[1])
            for line in header.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(self.buffer) < length:
            self._fill(deadline)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        message = json.loads(body)
        if message.get("type") == "event":
            self.events.append(message)
        elif message.get("type") == "response":
            self.responses[message["request_seq"]] = message

    def _fill(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise TimeoutError("no answer from the debug adapter in time")
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the debug adapter closed the connection")
        self.buffer += data


def stop_at_and_read(
    client: DapClient, path: str, line: int, names: tuple[str, ...]
) -> tuple[dict, dict[str, str]]:
    """Attach as VS Code does, stop at `path:line`, read `names` from that frame's locals
    (and globals: a cell's variables are its module's globals), continue, disconnect.
    Returns (the top frame, {name: value as the debugger shows it})."""
    client.request(
        "initialize",
        clientID="runctl-tests",
        adapterID="debugpy",
        pathFormat="path",
        linesStartAt1=True,
        columnsStartAt1=True,
    )
    attach = client.send("attach", justMyCode=False)
    client.event("initialized")
    placed = client.request(
        "setBreakpoints", source={"path": path}, breakpoints=[{"line": line}], lines=[line]
    )
    assert placed["breakpoints"][0]["verified"], placed
    client.request("configurationDone")
    client.response(attach)
    stopped = client.event("stopped")
    assert stopped["reason"] == "breakpoint", stopped
    frames = client.request("stackTrace", threadId=stopped["threadId"], startFrame=0, levels=1)
    frame = frames["stackFrames"][0]
    values: dict[str, str] = {}
    for scope in client.request("scopes", frameId=frame["id"])["scopes"]:
        found = client.request("variables", variablesReference=scope["variablesReference"])
        for variable in found["variables"]:
            if variable["name"] in names:
                values.setdefault(variable["name"], variable["value"])
    client.request("continue", threadId=stopped["threadId"])
    client.request("disconnect", terminateDebuggee=False)
    return frame, values
