"""The docs stay true: every command and option the parser knows is documented."""

from __future__ import annotations

import re
from pathlib import Path

from runctl_jupyter.commands import format_help

ROOT = Path(__file__).resolve().parent.parent


def test_every_command_and_train_option_is_in_the_command_reference():
    text = (ROOT / "docs" / "commands.md").read_text()
    top = format_help("runctl")
    commands = re.findall(r"^    (\w+)\s", top, flags=re.M)
    assert "train" in commands and "runs" in commands
    for command in commands:
        assert f"## {command}" in text, f"docs/commands.md lacks `{command}`"
    train_help = format_help("runctl", "train")
    for option in re.findall(r"--[a-z][a-z-]+", train_help):
        assert option in text, f"docs/commands.md lacks {option}"


def test_the_event_types_the_agent_writes_are_documented():
    text = (ROOT / "docs" / "events.md").read_text()
    agent = sorted((ROOT / "runctl_jupyter" / "agent").glob("*.py"))
    source = "\n".join(path.read_text() for path in agent)
    written = set(re.findall(r'events\.write\(\s*"(\w+)"', source)) | {"metric", "checkpoint"}
    for kind in written:
        assert f"| `{kind}` |" in text, f"docs/events.md lacks the `{kind}` event"
