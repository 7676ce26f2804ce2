"""params/: typed values, -p assignments, the original runctl's aliases, grids and spaces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runctl_jupyter.errors import RunctlError
from runctl_jupyter.params.assignments import parse_assignments, parse_hyperparams
from runctl_jupyter.params.objectives import parse_early_stop, parse_objective
from runctl_jupyter.params.search import parse_grid, parse_grid_hyperparams, parse_space
from runctl_jupyter.params.values import BadParam, merge_params, parse_value


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3", 3),
        ("-7", -7),
        ("0.05", 0.05),
        ("1e-3", 0.001),
        ("-2.5E2", -250.0),
        (".5", 0.5),
        ("true", True),
        ("True", True),
        ("false", False),
        ("False", False),
        ("none", None),
        ("None", None),
        ("null", None),
        ("[64,32]", [64, 32]),
        ("[64, 32]", [64, 32]),
        ('{"a": 1, "b": [1.5, null]}', {"a": 1, "b": [1.5, None]}),
        ("{'a': 1, 'b': True}", {"a": 1, "b": True}),
        ("(1, 2)", [1, 2]),
        ("[(1, 2), {'k': (3,)}]", [[1, 2], {"k": [3]}]),
        ('"[x"', "[x"),
        ("'quoted'", "quoted"),
    ],
)
def test_values_are_typed(text, expected):
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    "text",
    ["abc", "x=$(touch /tmp/pwned)", "$HOME", "`id`", "1.2.3", "nan", "TRUE", "", " 3", "adam"],
)
def test_anything_else_stays_the_exact_text(text):
    assert parse_value(text) == text


def test_a_broken_list_is_an_error_that_says_how_to_pass_text():
    with pytest.raises(BadParam) as info:
        parse_value("[64,32")
    assert "JSON string" in str(info.value)
    assert isinstance(info.value, RunctlError)


def test_a_set_literal_is_not_a_json_value():
    with pytest.raises(BadParam, match="set"):
        parse_value("{1, 2}")


def test_assignments_are_typed_and_later_wins():
    got = parse_assignments(["lr=1e-3", "hidden=[64,32]", "name=abc", "lr=0.5", "url=a=b"])
    assert got == {"lr": 0.5, "hidden": [64, 32], "name": "abc", "url": "a=b"}


def test_an_assignment_without_equals_says_what_to_write():
    with pytest.raises(BadParam) as info:
        parse_assignments(["lr"])
    assert str(info.value) == "bad -p 'lr': expected KEY=VALUE, e.g. -p lr=0.01"
    with pytest.raises(BadParam, match="expected KEY=VALUE"):
        parse_assignments(["=3"])


@pytest.mark.parametrize("item", ["1x=3", "my-lr=3", "class=1", "a b=1"])
def test_keys_must_be_python_names(item):
    with pytest.raises(BadParam, match="keys become Python variables"):
        parse_assignments([item])


def test_the_runctl_name_is_reserved():
    with pytest.raises(BadParam, match="taken by runctl"):
        parse_assignments(["runctl=1"])


def test_hyperparams_alias_does_not_split_inside_brackets_or_quotes():
    got = parse_hyperparams("epochs=50,lr=0.001,hidden=[64,32],cfg={'a': 1, 'b': 2},note='a,b'")
    assert got == {
        "epochs": 50,
        "lr": 0.001,
        "hidden": [64, 32],
        "cfg": {"a": 1, "b": 2},
        "note": "a,b",
    }


def test_hyperparams_alias_tolerates_spaces_and_a_trailing_comma():
    assert parse_hyperparams(" epochs=5 , lr=0.1, ") == {"epochs": 5, "lr": 0.1}


def test_empty_hyperparams_is_an_error():
    with pytest.raises(BadParam, match="empty"):
        parse_hyperparams(" , ")


def test_an_unbalanced_quote_in_hyperparams_is_an_error():
    with pytest.raises(BadParam, match="unbalanced"):
        parse_hyperparams("note='abc,lr=1")


def test_grid_items_become_value_lists():
    got = parse_grid(["lr=0.001,0.01,0.1", "hidden=[64,32],[128]", "opt=adam,sgd"])
    assert got == {"lr": [0.001, 0.01, 0.1], "hidden": [[64, 32], [128]], "opt": ["adam", "sgd"]}


@pytest.mark.parametrize(
    "items, match",
    [
        (["lr="], "no values"),
        (["lr=1,,2"], "empty value"),
        (["lr=1", "lr=2"], "given twice"),
        (["lr"], "KEY=V1,V2"),
    ],
)
def test_bad_grids_are_errors(items, match):
    with pytest.raises(BadParam, match=match):
        parse_grid(items)


def test_sweep_hyperparams_alias_is_a_grid():
    got = parse_grid_hyperparams("lr:0.001,0.01 batch_size:32,64  hidden:[64,32],[8, 8]")
    assert got == {"lr": [0.001, 0.01], "batch_size": [32, 64], "hidden": [[64, 32], [8, 8]]}


@pytest.mark.parametrize(
    "text, match",
    [
        ("lr:1 lr:2", "given twice"),
        ("lr", "KEY:V1,V2"),
        ("lr:", "no values"),
        ("", "empty"),
        ("lr=0.1,epochs=5", "give fixed values with -p"),
    ],
)
def test_bad_sweep_hyperparams_are_errors(text, match):
    with pytest.raises(BadParam, match=match):
        parse_grid_hyperparams(text)


def test_spaces_parse_into_distributions():
    got = parse_space(
        [
            "lr=loguniform(1e-4,1e-1)",
            "layers=choice(2,3,4)",
            "dropout=uniform(0, 0.5)",
            "units=randint(16,128)",
            "act=choice(relu,'tanh')",
        ]
    )
    assert got == {
        "lr": {"dist": "loguniform", "args": [0.0001, 0.1]},
        "layers": {"dist": "choice", "args": [2, 3, 4]},
        "dropout": {"dist": "uniform", "args": [0, 0.5]},
        "units": {"dist": "randint", "args": [16, 128]},
        "act": {"dist": "choice", "args": ["relu", "tanh"]},
    }


@pytest.mark.parametrize(
    "item, match",
    [
        ("lr=logunifrom(1e-4,1e-1)", "unknown distribution 'logunifrom'"),
        ("lr=loguniform(0,1)", "0 < low"),
        ("lr=uniform(2,1)", "low must be less than high"),
        ("lr=uniform(1)", "takes 2 numbers"),
        ("lr=uniform(a,b)", "takes 2 numbers"),
        ("n=randint(1.5,3)", "two integers"),
        ("lr=loguniform", "DIST\\(ARGS\\)"),
        ("lr=choice()", "missing arguments"),
        ("lr", "KEY=DIST"),
    ],
)
def test_bad_spaces_are_errors_that_list_the_distributions(item, match):
    with pytest.raises(BadParam, match=match) as info:
        parse_space([item])
    if "KEY=DIST" not in match:
        assert "loguniform(low,high)" in str(info.value)


def test_objective_needs_a_direction():
    assert parse_objective("val_acc:max") == {"metric": "val_acc", "mode": "max"}
    assert parse_objective("loss:MIN") == {"metric": "loss", "mode": "min"}
    with pytest.raises(BadParam, match="METRIC:max or METRIC:min"):
        parse_objective("val_acc")


def test_early_stop_in_both_spellings():
    assert parse_early_stop("val_loss:min,patience=3,min_delta=0.01") == {
        "metric": "val_loss",
        "mode": "min",
        "patience": 3,
        "min_delta": 0.01,
        "warmup": 0,
    }
    # the original runctl's `--early-stopping patience=10`: metric from --objective
    original = parse_early_stop("patience=10")
    assert original["metric"] is None and original["patience"] == 10


@pytest.mark.parametrize(
    "text, match",
    [("patience=0", "positive"), ("patience=x", "a number"), ("speed=3", "unknown setting")],
)
def test_bad_early_stop_is_an_error(text, match):
    with pytest.raises(BadParam, match=match):
        parse_early_stop(text)


def test_merge_later_wins_and_keeps_json_values():
    var = {"lr": 0.1, "epochs": 5, "shape": (2, 3)}
    got = merge_params(var, {"lr": 0.5})
    assert got == {"epochs": 5, "shape": [2, 3], "lr": 0.5}
    assert json.loads(json.dumps(got)) == got


def test_merge_turns_numpy_scalars_into_python_numbers():
    got = merge_params({"lr": np.float32(0.5), "n": np.int64(3), "flag": np.bool_(True)}, None)
    assert got == {"lr": 0.5, "n": 3, "flag": True}
    assert [type(v) for v in got.values()] == [float, int, bool]


def test_merge_names_the_key_of_a_value_that_is_not_json():
    with pytest.raises(BadParam, match="'weights'.*array of shape \\(3,\\)"):
        merge_params({"weights": np.zeros(3)})
    with pytest.raises(BadParam, match="'model'.*object"):
        merge_params({"lr": 1}, {"model": object()})


def test_merge_rejects_keys_that_cannot_be_globals():
    with pytest.raises(BadParam, match="'learning rate'"):
        merge_params({"learning rate": 0.1})


def test_merge_rejects_a_non_dict():
    with pytest.raises(BadParam, match="must be a dict"):
        merge_params([("lr", 0.1)])
