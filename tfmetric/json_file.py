"""Reading the project's JSON files (configs, metrics, manifests, model cards) with errors that name them.

``json.load`` alone reports "Expecting value: line 1 column 1 (char 0)" for a truncated or empty
file, which names no file; these raise ``ValueError`` naming the file and what is wrong.
"""
import json


def parse_json(text, path):
    """The JSON value in ``text`` (the contents of ``path``); ValueError naming ``path`` if it is not JSON."""
    try:
        return json.loads(text)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid JSON ({e}); it may be truncated or edited by hand.") from None


def read_json(path):
    """The JSON value in the local file ``path`` (see parse_json)."""
    with open(path, "rb") as f:
        return parse_json(f.read(), path)
