"""Which notebook objects look like secrets, so a cell's run is not given them.

A run's objects are pickled into its folder, its S3 bundle and its record.ipynb,
so a token in an earlier cell (`api_key = "..."`) would travel with every run
that reads it. A notebook variable is held back (unless named in `--ship NAME`)
when:

- its name has a secret's word (key, token, secret, password, passwd, credential,
  and words ending in them: apikey, hftoken; not keys, tokens, tokenizer, monkey)
  and its value is text: str or bytes, or a list/tuple/set/dict of only text
  (a tokenizer's special token such as `pad_token = "<pad>"` or `"[CLS]"` is not);
- its value holds an AWS access key id (AKIA/ASIA + 16) or what looks like an AWS
  secret key (40 base64 characters, mixed case and digits, not a 40-hex git hash),
  in a str or bytes or inside a dict/list/tuple/set of them (a few levels deep);
- it is a dict with a secret-named key holding text (`{"wandb_key": "..."}`);
- its pickle carries an AWS access key id, or the key-like value of a notebook
  variable named like a secret (`client = Client(api_key=api_key)`).

A shipped notebook function takes along the globals it reads (`reached_globals`):
those are judged the same way, and capture.py hides the held-back ones from it.

Values are only looked at cheaply: the first ITEMS_LOOKED_AT items of a variable
(strings, numbers, containers), CHARS_LOOKED_AT characters of a string and
TEXT_LOOKED_AT in all.
"""

from __future__ import annotations

import dis
import re
import types
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from ..errors import RunctlError

ITEMS_LOOKED_AT = 10_000
CHARS_LOOKED_AT = 100_000  # of one string
TEXT_LOOKED_AT = 1_000_000  # of one variable
_DEPTH = 4

_SECRET_ENDINGS = (
    "token",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "credential",
    "credentials",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "passkey",
)
# a name's words: snake_case and camelCase parts (APIKey -> API, Key)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_AWS_KEY_ID_BYTES = re.compile(_AWS_KEY_ID.pattern.encode())
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_SPECIAL_TOKEN = re.compile(r"<[^<>\s]*>|\[[^\[\]\s]*\]")
_TEXT = (str, bytes, bytearray)
_CONTAINERS = (list, tuple, set, frozenset)


def secret_name(name: str) -> bool:
    """True for `api_key`, `HF_TOKEN`, `apiKey`, `db_password`; False for `tokenizer`,
    `keys`, `monkey`, `max_tokens`."""
    for word in _WORD.findall(name):
        word = word.lower()
        if word == "key" or word.endswith(_SECRET_ENDINGS):
            return True
    return False


def _is_text(value: Any, depth: int = 0) -> bool:
    """str/bytes, or a non-empty container holding only text (a dict: its values);
    a tokenizer's special token (`<pad>`, `</s>`, `[CLS]`) is not secret text."""
    if isinstance(value, str):
        return not _SPECIAL_TOKEN.fullmatch(value)
    if isinstance(value, _TEXT):
        return True
    if depth >= _DEPTH or not isinstance(value, (dict, *_CONTAINERS)):
        return False
    items = list(islice(value.values() if isinstance(value, dict) else value, ITEMS_LOOKED_AT))
    return bool(items) and all(_is_text(item, depth + 1) for item in items)


def _looks_like_aws_secret(text: str) -> bool:
    for match in _AWS_SECRET.finditer(text):
        word = match.group()
        mixed = any(c.isupper() for c in word) and any(c.islower() for c in word)
        # a random key has ~30 distinct characters; paths and words have far fewer
        if mixed and any(c.isdigit() for c in word) and len(set(word)) >= 20:
            return True
    return False


def _strings(value: Any, budget: list[int], depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(text, the dict key it sits under or None) for the text in `value`; `budget` is
    [items, characters]: every item looked at (text or not) spends one, so a list of
    a million floats is cheap, and a corpus of documents at most TEXT_LOOKED_AT."""
    budget[0] -= 1
    if budget[0] < 0 or budget[1] <= 0:
        return
    if isinstance(value, _TEXT):
        size = min(CHARS_LOOKED_AT, budget[1])
        budget[1] -= size
        text = value if isinstance(value, str) else bytes(value[:size]).decode("latin-1")
        yield text[:size], None
        return
    if depth >= _DEPTH:
        return
    if isinstance(value, dict):
        for key, item in islice(value.items(), max(budget[0], 0)):
            if isinstance(key, _TEXT):
                yield from _strings(key, budget, depth + 1)
            for text, _ in _strings(item, budget, depth + 1):
                yield text, key
    elif isinstance(value, _CONTAINERS):
        for item in islice(value, max(budget[0], 0)):
            yield from _strings(item, budget, depth + 1)


def _budget() -> list[int]:
    return [ITEMS_LOOKED_AT, TEXT_LOOKED_AT]


def has_aws_key_id(data: bytes) -> bool:
    """An AWS access key id anywhere in `data` (a pickle): bytes.find for the prefixes
    (fast on hundreds of MB), the pattern only where one is found."""
    for prefix in (b"AKIA", b"ASIA"):
        start = data.find(prefix)
        while start != -1:
            # match() from `start` still looks behind it; endpos keeps the byte after the id
            if _AWS_KEY_ID_BYTES.match(data, start, start + 21):
                return True
            start = data.find(prefix, start + 1)
    return False


def named_secrets(namespace: dict[str, Any], skip: set[str]) -> dict[str, Any]:
    """Every variable of `namespace` named like a secret and holding text, read by the
    cell or not (cheap: its name is looked at first): its value must not travel
    inside another object either."""
    return {
        name: value
        for name, value in list(namespace.items())
        if not name.startswith("_") and name not in skip and secret_name(name) and _is_text(value)
    }


def key_like_texts(held: dict[str, Any]) -> dict[str, list[bytes]]:
    """{name: its texts as a pickle stores them (UTF-8)} for the held-back values that
    look like a key (16+ characters, letters and digits, no space), to find them
    inside other objects (a client made with `api_key=api_key`); shorter or plainer
    text (`sort_key = "loss"`) would be found in innocent objects."""
    found = {}
    for name, value in held.items():
        texts = {
            text.encode("utf-8", "surrogatepass")
            for text, _ in _strings(value, _budget())
            if len(text) >= 16
            and not any(c.isspace() for c in text)
            and any(c.isdigit() for c in text)
            and any(c.isalpha() for c in text)
        }
        if texts:
            found[name] = sorted(texts)
    return found


def secret_inside(blob: bytes, held_texts: dict[str, list[bytes]]) -> str | None:
    """Why a pickle carries a secret: an AWS access key id, or a held-back value."""
    if has_aws_key_id(blob):
        return "an AWS access key id inside it"
    for name, texts in held_texts.items():
        if any(text in blob for text in texts):
            return f"the value of {name} inside it"
    return None


def why_secret(name: str, value: Any) -> str | None:
    """Why the notebook variable `name` looks like a secret, or None."""
    if secret_name(name) and _is_text(value):
        return "named like a secret"
    for text, key in _strings(value, _budget()):
        if _AWS_KEY_ID.search(text):
            return "holds an AWS access key id"
        if _looks_like_aws_secret(text):
            return "holds what looks like an AWS secret key"
        if isinstance(key, str) and secret_name(key) and _is_text(text):
            return f"holds text under {key!r}"
    return None


def hold_back(candidates: dict[str, Any], ship: set[str]) -> dict[str, str]:
    """{name: why} for the candidates that look like secrets and were not named in --ship."""
    held = {}
    for name, value in candidates.items():
        if name in ship:
            continue
        why = why_secret(name, value)
        if why is not None:
            held[name] = why
    return held


def refuse_secret_params(var: str, params: dict[str, Any], ship: Iterable[str]) -> None:
    """`--params VAR`: hyperparameters are recorded (spec, record, tables), so a dict
    entry that looks like a secret is refused, unless VAR is named in --ship."""
    if var in ship:
        return
    for key, value in params.items():
        why = why_secret(str(key), value)
        if why is not None:
            raise RunctlError(
                f"--params {var}: {var}[{key!r}] looks like a secret ({why}) and hyperparameters "
                f"are recorded with the run: take it out of {var}, or add --ship {var} to record it"
            )


# -- what a shipped function takes along ------------------------------------------
_GLOBAL_OPS = {"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME"}


def _global_names(code: types.CodeType) -> set[str]:
    names = set()
    for instruction in dis.get_instructions(code):
        if instruction.opname in _GLOBAL_OPS:
            names.add(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _functions(obj: Any, module: str) -> list[types.FunctionType]:
    """The notebook functions cloudpickle pickles by value along with `obj`."""
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if isinstance(obj, types.FunctionType):
        return [obj]
    cls = obj if isinstance(obj, type) else type(obj)
    if getattr(cls, "__module__", None) != module:
        return []
    found = []
    for member in vars(cls).values():
        member = getattr(member, "__func__", member)  # staticmethod, classmethod
        if isinstance(member, types.FunctionType):
            found.append(member)
    return found


def reached_globals(objects: dict[str, Any], user_ns: dict[str, Any]) -> dict[str, Any]:
    """The notebook variables that shipped notebook functions (and classes' methods)
    read: cloudpickle ships them with the function, though the cell never names them."""
    module = user_ns.get("__name__", "__main__")
    reached: dict[str, Any] = {}
    todo, seen = list(objects.values()), set()
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for function in _functions(obj, module):
            if function.__globals__ is not user_ns:
                continue
            for name in _global_names(function.__code__):
                if name in user_ns and name not in objects and name not in reached:
                    reached[name] = user_ns[name]
                    todo.append(user_ns[name])
    return reached
