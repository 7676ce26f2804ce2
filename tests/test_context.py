"""Context memory (issue 17): a bare `%%runctl train` after one with options does
what the user meant, says once what it reused; `--fresh`, `%runctl context`."""

from __future__ import annotations

from IPython.utils.capture import capture_output

from runctl_jupyter import cli

CELL = "runctl.log(step=0, loss=1.0)\n"


def _train(ip, line: str = ""):
    with capture_output() as cap:
        run = ip.run_cell_magic("runctl", f"train {line}".strip(), CELL)
    return run, cap.stdout


def _row(ip, run) -> dict:
    return ip.find_line_magic("runctl").__self__.session.store.get(run.id)


def test_a_bare_train_reuses_what_this_notebook_typed_and_says_it_once(ip, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/digits.ipynb")
    first, _ = _train(ip, "--experiment digits-mlp --project vision -p lr=0.1")
    assert _row(ip, first)["experiment"] == "digits-mlp"

    second, said = _train(ip)
    row = _row(ip, second)
    assert (row["experiment"], row["project"]) == ("digits-mlp", "vision")
    assert "as before in this notebook: --project vision --experiment digits-mlp" in said
    assert "--fresh" in said

    third, said = _train(ip)
    assert _row(ip, third)["experiment"] == "digits-mlp"
    assert "as before" not in said  # once is enough

    # an option typed now wins, and is what is remembered next
    other, _ = _train(ip, "--experiment digits-cnn")
    assert _row(ip, other)["experiment"] == "digits-cnn"
    after, said = _train(ip)
    assert _row(ip, after)["experiment"] == "digits-cnn"
    assert "--experiment digits-cnn" in said

    fresh, said = _train(ip, "--fresh")
    assert _row(ip, fresh)["experiment"] != "digits-cnn"
    assert _row(ip, fresh)["project"] != "vision"
    assert "as before" not in said


def test_each_notebook_has_its_own_memory(ip, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/a.ipynb")
    _train(ip, "--experiment from-a")
    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/b.ipynb")
    run, said = _train(ip)
    assert _row(ip, run)["experiment"] != "from-a"
    assert "as before" not in said
    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/a.ipynb")
    run, _ = _train(ip)
    assert _row(ip, run)["experiment"] == "from-a"


def test_context_shows_the_memory_and_clear_forgets_it(ip, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/c.ipynb")
    shown = str(ip.run_line_magic("runctl", "context"))
    assert "context of /lab/c.ipynb: nothing yet" in shown
    run, _ = _train(ip, "--experiment shown-exp --backend local")
    shown = str(ip.run_line_magic("runctl", "context"))
    assert "experiment" in shown and "shown-exp" in shown
    assert "backend" in shown and "local" in shown
    assert run.id in shown  # the last run
    ip.run_line_magic("runctl", "context --clear")
    assert "nothing yet" in str(ip.run_line_magic("runctl", "context"))
    after, said = _train(ip)
    assert _row(ip, after)["experiment"] != "shown-exp"


def test_a_local_run_does_not_inherit_cloud_options(ip, monkeypatch, home):
    """What was typed for AWS is not carried to `--backend local` (it would be refused)."""
    from runctl_jupyter.runs.context import Context, context_key

    monkeypatch.setenv("JPY_SESSION_NAME", "/lab/d.ipynb")
    memory = Context(home, context_key())
    memory.remember({"backend": "aws", "options": {"instance_type": "g5.xlarge"}}, None)
    run, said = _train(ip, "--backend local")
    assert _row(ip, run)["status"] == "succeeded"
    assert "--instance-type" not in said
    assert "instance_type" not in memory.read()  # a local launch forgets the cloud ones


def test_the_shell_remembers_per_working_folder(home, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    project = tmp_path / "proj"
    project.mkdir()
    (project / "train.py").write_text(
        "from runctl_jupyter.runtime import runctl\nrunctl.log(step=0, loss=1.0)\n"
    )
    monkeypatch.chdir(project)
    assert cli.main(["train", "train.py", "--experiment", "shell-exp"]) == 0
    capsys.readouterr()
    assert cli.main(["train", "train.py"]) == 0
    out = capsys.readouterr().out
    assert "as before in this folder: --experiment shell-exp" in out
    assert cli.main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert listing.count(" shell-exp ") == 2  # the experiment column of both runs
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    assert cli.main(["context"]) == 0
    assert "nothing yet" in capsys.readouterr().out


def test_an_executed_notebook_remembers_as_that_notebook(session, tmp_path, monkeypatch):
    """`runctl execute NB.ipynb`: the kernel is told the notebook's path as Jupyter tells
    its own kernels (JPY_SESSION_NAME), so the memory is that notebook's."""
    import nbformat

    from runctl_jupyter.runs.context import Context

    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext runctl_jupyter"),
        nbformat.v4.new_code_cell(f"%%runctl train --experiment nb-exp\n{CELL}"),
        nbformat.v4.new_code_cell(f"%%runctl train --name second\n{CELL}"),
    ]
    path = tmp_path / "work" / "exec_me.ipynb"
    nbformat.write(nb, path)
    run = session.execute(str(path))
    assert session.store.get(run.id)["status"] == "succeeded", session.logs(run.id)
    second = session.store.get(session.run("second").id)
    assert second["experiment"] == "nb-exp"
    assert "as before in this notebook: --experiment nb-exp" in str(session.logs(run.id))
    assert Context(session.store.home, str(path.resolve())).read()["experiment"] == "nb-exp"
