"""Secrets in notebook variables (runs/secrets.py, runs/capture.py `pack_objects`):
in a real IPython shell with real local runs, a cell's notebook objects that look
like secrets are held back (said in one line), the run still starts, nothing held
back reaches objects.pkl, spec.json or record.ipynb, a NameError for one says to
add --ship NAME, and --ship NAME sends it after all."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from IPython.utils.capture import capture_output

from runctl_jupyter.cli import main as cli_main
from runctl_jupyter.errors import RunFailed
from runctl_jupyter.runs.secrets import has_aws_key_id, secret_name, why_secret

API_KEY = "sk-live-0123456789abcdef"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example shape
AWS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRETS = (API_KEY, AWS_SECRET, AWS_SECRET[::-1], AWS_KEY_ID, "hunter2-db-pass")


NOTEBOOK_NAMES = ("Tokenizer", "tokenizer", "tokens", "api_key", "AWS_SECRET", "material",
                  "creds", "config", "auth_header")  # fmt: skip


@pytest.fixture
def notebook(ip):
    """conftest's real shell, with a notebook's worth of variables."""
    shell = ip
    shell.run_cell(
        f"""
class Tokenizer:
    def __init__(self, vocab):
        self.vocab = vocab
    def encode(self, text):
        return [self.vocab[w] for w in text.split()]

tokenizer = Tokenizer({{"a": 1, "b": 2}})
tokens = ["a", "b"]
api_key = {API_KEY!r}
AWS_SECRET = {AWS_SECRET!r}
material = {AWS_SECRET[::-1]!r}
creds = {{"profile": "default", "id": {AWS_KEY_ID!r}}}
config = {{"lr": 0.1, "db_password": "hunter2-db-pass"}}
def auth_header():
    return "Bearer " + api_key
"""
    )
    yield shell
    for name in NOTEBOOK_NAMES:
        shell.user_ns.pop(name, None)


# a cell that reads every variable above, without failing on the held-back ones
READS_ALL = """
got = {}
for name in ("api_key", "AWS_SECRET", "material", "creds", "config", "tokens"):
    got[name] = name in globals()
if False:
    print(api_key, AWS_SECRET, material, creds, config, tokens)
print("encoded", tokenizer.encode("a b"))
print("got", sorted(k for k, v in got.items() if v))
"""


def _folder_text(run_dir: Path) -> str:
    """Everything a run leaves that could carry a value: objects.pkl, spec.json,
    params.json, record.ipynb and the objects it embeds."""
    pickled = run_dir / "objects.pkl"
    parts = [pickled.read_bytes().decode("latin-1") if pickled.exists() else ""]
    for name in ("spec.json", "params.json", "record.ipynb"):
        parts.append((run_dir / name).read_text())
    record = json.loads((run_dir / "record.ipynb").read_text())
    embedded = record["metadata"]["runctl"].get("objects_b64") or ""
    parts.append(base64.b64decode(embedded).decode("latin-1"))
    return "\n".join(parts)


def _run_dir(home: Path, run_id: str) -> Path:
    return home / "runs" / run_id


def test_names_that_look_like_secrets():
    for name in ("api_key", "API_KEY", "apiKey", "OPENAI_APIKEY", "hf_token", "HFTOKEN",
                 "AWS_SECRET", "db_password", "passwd", "credentials", "key", "private_key"):  # fmt: skip
        assert secret_name(name), name
    for name in ("tokenizer", "tokenizer_name", "tokens", "keys", "monkey", "keyboard",
                 "max_tokens", "num_keys", "lr", "secretary_x"):  # fmt: skip
        assert not secret_name(name), name


def test_values_that_look_like_secrets():
    assert why_secret("api_key", "abc") == "named like a secret"
    assert why_secret("hf_token", b"abc") == "named like a secret"
    assert why_secret("credentials", {"user": "ann", "pass": "x"}) == "named like a secret"
    assert why_secret("key_fn", len) is None  # a secret's name, but not text
    assert why_secret("max_tokens", 512) is None
    assert why_secret("pad_token", "<pad>") is None and why_secret("cls_token", "[CLS]") is None
    assert why_secret("eos_token", "<|endoftext|>") is None
    assert why_secret("hf_token", "hf_abc<pad>") == "named like a secret"
    assert why_secret("x", [["AKIAIOSFODNN7EXAMPLE"]]) == "holds an AWS access key id"
    assert why_secret("x", ("ASIA" + "Q" * 16,)) == "holds an AWS access key id"
    assert why_secret("x", "AKIAIOSFODNN7EXAMPLEX") is None  # 17 after AKIA: not a key id
    assert why_secret("x", AWS_SECRET) == "holds what looks like an AWS secret key"
    assert why_secret("sha", "3f9a1c2b7d" * 4) is None  # a git commit: 40 hex, lower case
    assert why_secret("path", "data/ImageNet/train/n01440764/n01440764A") is None
    assert why_secret("cfg", {"lr": 0.1, "wandb_key": "abc"}) == "holds text under 'wandb_key'"
    assert why_secret("cfg", {"lr": 0.1, "sort_key": len}) is None
    assert why_secret("special_tokens_map", {"pad_token": "<pad>", "eos_token": "</s>"}) is None


def test_secret_like_objects_are_held_back_and_the_run_starts(notebook, home):
    with capture_output() as cap:
        run = notebook.run_cell_magic("runctl", "train --name held", READS_ALL)
    assert run.status == "succeeded"
    held = [line for line in cap.stderr.splitlines() if "held back" in line]
    assert len(held) == 1, cap.stderr
    line = held[0]
    for part in ("api_key (named like a secret)", "AWS_SECRET (named like a secret)",
                 "material (holds what looks like an AWS secret key)",
                 "creds (holds an AWS access key id)", "config (holds text under 'db_password')",
                 "add --ship NAME"):  # fmt: skip
        assert part in line, line
    assert "tokenizer" not in line and "tokens" not in line
    logs = str(notebook.run_line_magic("runctl", f"logs {run.id}"))
    assert "encoded [1, 2]" in logs  # the tokenizer object was shipped and works
    assert "got ['tokens']" in logs
    run_dir = _run_dir(home, run.id)
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["objects"] == ["tokenizer", "tokens"]
    assert spec["options"]["held_back"] == ["AWS_SECRET", "api_key", "config", "creds", "material"]
    text = _folder_text(run_dir)
    for secret in SECRETS:
        assert secret not in text, secret


def test_a_name_error_for_a_held_back_name_says_to_ship_it(notebook, home):
    with pytest.raises(RunFailed) as info:
        notebook.run_cell_magic("runctl", "train", "print(len(api_key))\n")
    assert "add --ship api_key to send it" in str(info.value)
    assert "NameError" in str(info.value)


def test_a_shipped_function_does_not_take_a_held_back_global_along(notebook, home):
    code = "try:\n    auth_header()\nexcept NameError as exc:\n    print('refused', exc.name)\n"
    with capture_output() as cap:
        run = notebook.run_cell_magic("runctl", "train", code)
    assert "api_key (named like a secret)" in cap.stderr
    assert "refused api_key" in str(notebook.run_line_magic("runctl", f"logs {run.id}"))
    assert API_KEY not in _folder_text(_run_dir(home, run.id))
    assert notebook.user_ns["api_key"] == API_KEY  # the notebook keeps its variable


def test_ship_sends_a_named_secret_and_only_that(notebook, home):
    code = "print('len', len(api_key), auth_header()[:6])\nif False:\n    print(AWS_SECRET)\n"
    with capture_output() as cap:
        run = notebook.run_cell_magic("runctl", "train --ship api_key", code)
    assert run.status == "succeeded"
    assert "len 24 Bearer" in str(notebook.run_line_magic("runctl", f"logs {run.id}"))
    assert "AWS_SECRET (" in cap.stderr and "api_key (" not in cap.stderr
    text = _folder_text(_run_dir(home, run.id))
    assert API_KEY in text and AWS_SECRET not in text


def test_an_aws_key_inside_an_object_is_found_in_its_pickle(notebook, home):
    notebook.run_cell("class Settings: pass\nsettings = Settings()\nsettings.ids = {'aws': " + repr(AWS_KEY_ID) + "}\n")  # fmt: skip
    try:
        with capture_output() as cap:
            run = notebook.run_cell_magic(
                "runctl", "train", "if False:\n    print(settings)\nprint('ok')\n"
            )
        assert "settings (an AWS access key id inside it)" in cap.stderr
        assert AWS_KEY_ID not in _folder_text(_run_dir(home, run.id))
    finally:
        notebook.user_ns.pop("settings", None)


def test_a_sweep_holds_back_too(notebook, home):
    with capture_output() as cap:
        sweep = notebook.run_cell_magic("runctl", "sweep --grid lr=1,2 --name s", READS_ALL)
    assert sweep.state.status == "succeeded"
    assert "api_key (named like a secret)" in cap.stderr
    sweep_dir = sweep.dir
    assert API_KEY not in (sweep_dir / "objects.pkl").read_bytes().decode("latin-1")
    assert API_KEY not in (sweep_dir / "sweep.json").read_text()
    for trial in sweep.state.trials:
        run_dir = _run_dir(home, trial["run_id"])
        assert json.loads((run_dir / "spec.json").read_text())["options"]["held_back"]
        text = _folder_text(run_dir)
        for secret in SECRETS:
            assert secret not in text, secret


@pytest.mark.parametrize(
    "line, says",
    [
        ("train --ship api-key", "--ship 'api-key': give the name of a notebook variable"),
        ("train --no-vars --ship api_key", "--no-vars sends none"),
        ("train --ship nope", "there is no notebook variable 'nope'"),
    ],
)
def test_bad_ship_is_one_line(notebook, line, says):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as info:
        notebook.run_cell_magic("runctl", line, "print(1)\n")
    assert says in str(info.value) and "\n" not in str(info.value)


def test_ship_in_the_shell_is_refused_with_one_line(home, tmp_path, capsys):
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    code = cli_main(["train", str(script), "--ship", "api_key"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "a SCRIPT (and the shell) has none to send: drop --ship" in err
    assert len(err.splitlines()) == 1
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())


def test_params_from_a_variable_with_a_secret_are_refused_unless_shipped(notebook, home):
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as info:
        notebook.run_cell_magic("runctl", "train --params config", "print(lr)\n")
    assert str(info.value) == (
        "--params config: config['db_password'] looks like a secret (named like a secret) and "
        "hyperparameters are recorded with the run: take it out of config, or add --ship config "
        "to record it"
    )
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())
    run = notebook.run_cell_magic("runctl", "train --params config --ship config", "print(lr)\n")
    assert run.status == "succeeded" and run.params["db_password"] == "hunter2-db-pass"


def test_looking_is_cheap_and_bounded():
    import os
    import time

    numbers = list(range(3_000_000))
    pickled = os.urandom(20_000_000) + b" AKIAIOSFODNN7EXAMPLE "
    started = time.perf_counter()
    assert why_secret("numbers", numbers) is None
    assert why_secret("api_key_list", numbers) is None  # a secret's name, but not text
    assert has_aws_key_id(pickled)
    assert not has_aws_key_id(pickled[:-22] + b"XAKIAIOSFODNN7EXAMPLE")  # 21 capitals: not an id
    # ~0.1 s on a quiet machine; generous for a loaded one
    assert time.perf_counter() - started < 5


def test_an_object_made_with_a_secret_is_held_back_too(notebook, home):
    notebook.run_cell(
        "class Client:\n    def __init__(self, api_key):\n        self._key = api_key\n"
        "    def ping(self):\n        return 'pong'\n"
        "client = Client(api_key)\nscore_key = 'val_loss'\nsorter = {'by': score_key}\n"
    )
    try:
        with capture_output() as cap:
            run = notebook.run_cell_magic(
                "runctl", "train", "if False:\n    client.ping()\nprint(sorter['by'])\n"
            )
        # the cell never names api_key, but the client carries its value
        assert "client (the value of api_key inside it)" in cap.stderr
        assert "sorter" not in cap.stderr  # 'val_loss' is too plain to hunt for elsewhere
        assert "val_loss" in str(notebook.run_line_magic("runctl", f"logs {run.id}"))
        assert API_KEY not in _folder_text(_run_dir(home, run.id))
    finally:
        for name in ("Client", "client", "score_key", "sorter"):
            notebook.user_ns.pop(name, None)


def test_a_sweep_ships_what_ship_names(notebook, home):
    sweep = notebook.run_cell_magic(
        "runctl", "sweep --grid lr=1 --ship api_key --name s2", "print('len', len(api_key))\n"
    )
    assert sweep.state.status == "succeeded"
    run_id = sweep.state.trials[0]["run_id"]
    assert "len 24" in str(notebook.run_line_magic("runctl", f"logs {run_id}"))
    assert API_KEY in (sweep.dir / "objects.pkl").read_bytes().decode("latin-1")
