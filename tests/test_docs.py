"""The docs stay true: every command and option the parser knows is documented."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # this checkout's package, not the installed one

from runctl_jupyter.commands import format_help  # noqa: E402

COMMANDS_MD = ROOT / "docs" / "commands.md"
# "## train" then a fenced block: the block is `runctl train --help`, word for word
_HELP_BLOCK = re.compile(r"^## (\w+)\n\n```\n(.*?)```\n", re.M | re.S)


def _help_at_80_columns(command: str) -> str:
    import os

    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal; the page is 80 wide
    return format_help("runctl", None if command == "runctl" else command)


def write_command_reference() -> None:
    """`python tests/test_docs.py`: rewrite docs/commands.md's help blocks from the parser."""
    text = COMMANDS_MD.read_text()
    new = _HELP_BLOCK.sub(
        lambda m: f"## {m[1]}\n\n```\n{_help_at_80_columns(m[1]).rstrip()}\n```\n", text
    )
    COMMANDS_MD.write_text(new)


def test_each_help_block_in_the_command_reference_is_the_parsers_help(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    blocks = _HELP_BLOCK.findall(COMMANDS_MD.read_text())
    assert len(blocks) > 10
    for command, block in blocks:
        expected = _help_at_80_columns(command).rstrip() + "\n"
        assert block == expected, (
            f"docs/commands.md's `{command}` block is not `runctl {command} --help`; "
            "rewrite them with `python tests/test_docs.py`"
        )


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


if __name__ == "__main__":
    write_command_reference()
