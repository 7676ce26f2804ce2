"""Tab completion of `%runctl` / `%%runctl` lines through a real IPython shell's Completer."""

from __future__ import annotations

import statistics
import time

from IPython.core.completer import provisionalcompleter
from test_magics_parse import HEAVY, fresh_python

from runctl_jupyter.commands import COMMANDS, build_parser
from runctl_jupyter.cost.prices import table
from runctl_jupyter.magics import COMPLETER_ID
from runctl_jupyter.store import Store
from runctl_jupyter.store.folders import new_run_id


def add_runs(home, runs: list[tuple[str, str | None, str | None, float]]) -> None:
    """Index rows (id, name, experiment, created) straight into the store's own table."""
    store = Store(home)
    conn = store._conn()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO runs (id, name, experiment, created, status, ev_status)"
        " VALUES (?, ?, ?, ?, 'succeeded', 'succeeded')",
        runs,
    )
    conn.execute("COMMIT")
    store.close()


def complete(ip, text: str) -> list[str]:
    with provisionalcompleter():
        return [c.text for c in ip.Completer.completions(text, len(text))]


def ours(ip, text: str) -> list[str]:
    """Only what the runctl matcher offered (IPython's own matchers may add to a line
    the runctl matcher has nothing for)."""
    with provisionalcompleter():
        found = ip.Completer.completions(text, len(text))
        return [c.text for c in found if c._origin == COMPLETER_ID]


def test_subcommands_and_a_prefix(ip):
    assert complete(ip, "%runctl ") == COMMANDS
    assert complete(ip, "%runctl s") == ["sweep", "show", "stop", "sweeps", "schedule", "schedules"]
    assert complete(ip, "%%runctl sw") == ["sweep", "sweeps"]
    assert complete(ip, "%runctl --debug ru") == ["runs"]
    assert complete(ip, "%runctl --d") == ["--debug"]


def test_flags_come_from_the_real_parser(ip):
    parser = build_parser("%runctl").commands["train"]
    spellings = [s for a in parser._actions for s in a.option_strings]
    assert ours(ip, "%%runctl train -") == spellings
    assert set(complete(ip, "%%runctl train --inst")) == {"--instance", "--instance-type"}
    assert complete(ip, "%runctl logs --f") == ["--follow"]
    assert complete(ip, "%runctl show x --") == ["--help"]
    assert complete(ip, "%runctl aws ") == ["setup", "policy", "doctor"]
    assert ours(ip, "%runctl train t.py -- --l") == []  # the script's own arguments


def test_runs_newest_first_after_run_commands(ip, home):
    add_runs(
        home,
        [
            ("r-old", "baseline", "digits", 100.0),
            ("r-mid", "wide", "digits", 200.0),
            ("r-new", "baseline", "mnist", 300.0),
        ],
    )
    for command in ("show", "logs", "attach", "stop", "resume", "rerun", "compare"):
        assert complete(ip, f"%runctl {command} ") == [
            "r-new", "baseline", "r-mid", "wide", "r-old"
        ], command  # fmt: skip
    assert complete(ip, "%runctl show r-") == ["r-new", "r-mid", "r-old"]
    assert complete(ip, "%runctl show w") == ["wide"]
    assert complete(ip, "%runctl compare r-new r-") == ["r-mid", "r-old"]
    assert ours(ip, "%runctl show r-new ") == []  # show takes one run


def test_experiments_after_experiment(ip, home):
    add_runs(
        home,
        [("a", None, "digits", 1.0), ("b", None, "mnist", 2.0), ("c", None, "digits-v2", 3.0)],
    )
    assert complete(ip, "%%runctl train --experiment ") == ["digits-v2", "mnist", "digits"]
    assert complete(ip, "%%runctl train -p lr=0.1 --experiment d") == ["digits-v2", "digits"]
    assert complete(ip, "%runctl runs --experiment=m") == ["mnist"]


def test_instance_types_from_the_bundled_table(ip):
    bundled = {name for types in table()["on_demand"].values() for name in types}
    found = complete(ip, "%%runctl train --backend aws --instance-type g5.")
    assert found and set(found) == {name for name in bundled if name.startswith("g5.")}
    assert complete(ip, "%%runctl train --instance-type=t3.mi") == ["t3.micro"]


def test_notebook_paths_after_execute(ip, tmp_path):
    (tmp_path / "work" / "train.ipynb").write_text("{}")
    (tmp_path / "work" / "script.py").write_text("")
    (tmp_path / "work" / "nbs").mkdir()
    (tmp_path / "work" / "nbs" / "eval.ipynb").write_text("{}")
    assert complete(ip, "%runctl execute ") == ["nbs/", "train.ipynb"]
    assert complete(ip, "%runctl execute nbs/") == ["nbs/eval.ipynb"]
    assert complete(ip, "%runctl execute t") == ["train.ipynb"]


def test_a_typo_offers_nothing(ip, home):
    add_runs(home, [("r-1", "baseline", "digits", 1.0)])
    assert complete(ip, "%runctl shw") == []
    assert complete(ip, "%runctl show zzz") == []
    assert complete(ip, "%runctl train --experiment zzz") == []
    assert complete(ip, "%runctl train --instance-type zz9") == []
    assert ours(ip, "%runctl shwo ") == []  # an unknown command: nothing from runctl


def test_only_runctl_lines_and_a_cells_first_line(ip):
    assert ours(ip, "%%runctl train\nx = ru") == []
    assert ours(ip, "print('%runctl ') ") == []
    assert ours(ip, "out = %runctl ru") == ["runs"]


def test_within_50_ms_on_10000_runs(ip, home):
    # ids as the store makes them; names and experiments shared as a sweep's trials share them
    ids = [new_run_id() for _ in range(10_000)]
    add_runs(
        home, [(rid, f"trial-{i % 500}", f"exp-{i % 40}", float(i)) for i, rid in enumerate(ids)]
    )
    assert complete(ip, "%runctl show ")[:3] == [ids[-1], "trial-499", ids[-2]]
    assert complete(ip, "%runctl show trial-49")[:2] == ["trial-499", "trial-498"]
    newest_a = [rid for rid in reversed(ids) if rid.startswith("a")]
    assert complete(ip, "%runctl logs a")[:5] == newest_a[:5]
    lines = ("%runctl show ", "%runctl logs a", "%runctl compare x trial-4", "%runctl stop t",
             "%%runctl train --experiment ", "%%runctl train --instance-type g")  # fmt: skip
    for line in lines:
        complete(ip, line)  # the first call builds the parser and opens the store
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            complete(ip, line)
            times.append(time.perf_counter() - t0)
        assert statistics.median(times) < 0.05, (line, times)


def test_load_ext_imports_neither_the_store_nor_the_completer_and_tab_nothing_heavy(home):
    out = fresh_python(
        """
        import sys
        from IPython.core.completer import provisionalcompleter
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "runctl_jupyter")
        lazy = ("runctl_jupyter.store", "runctl_jupyter.commands.completion")
        print([m for m in lazy if m in sys.modules])
        with provisionalcompleter():
            found = [c.text for c in ip.Completer.completions("%runctl lo", 10)]
        print(found, [m for m in HEAVY if m in sys.modules])
        """.replace("HEAVY", repr(HEAVY))
    )
    assert out.splitlines() == ["[]", "['logs'] []"]


def test_notebook_variables_after_ship(ip):
    ip.run_cell("api_key = 'x'\napi_url = 'y'\nimport json\n_hidden = 1\n")
    try:
        assert ours(ip, "%%runctl train --ship api") == ["api_key", "api_url"]
        found = ours(ip, "%%runctl sweep --grid lr=1,2 --ship ")
        assert "api_key" in found and "json" not in found and "_hidden" not in found
        assert "In" not in found and "get_ipython" not in found
    finally:
        for name in ("api_key", "api_url", "_hidden"):
            ip.user_ns.pop(name, None)
