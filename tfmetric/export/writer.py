"""Versioned, atomic SavedModel directories: ``<output_dir>/<name>/<version>/``.

TF Serving watches ``<output_dir>/<name>/`` and serves the highest integer version. A version is
written completely under ``<output_dir>/<name>/.tmp-<version>-<pid>`` (not an integer, so the
watcher ignores it) and then renamed into place with one ``rename(2)``, so a half-written
version is never visible. If another export took the version meanwhile, the rename fails and the
next free number is tried. Local file systems only (object stores have no atomic directory rename).
"""

import os
import re
import shutil

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RENAME_ATTEMPTS = 100


def check_model_name(name):
    """A model name is one path component TF Serving accepts: letters, digits, ``.``, ``_``, ``-``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Invalid model name {name!r}; use letters, digits, '.', '_' and '-' "
            f"(it is a directory name and the TF Serving model name). Received: name={name!r}"
        )
    return name


def versions(model_root):
    """The integer versions present under ``model_root``, ascending (empty if it does not exist)."""
    if not os.path.isdir(model_root):
        return []
    return sorted(
        int(entry)
        for entry in os.listdir(model_root)
        if entry.isdigit() and os.path.isdir(os.path.join(model_root, entry))
    )


def next_version(model_root):
    """One more than the highest existing version, starting at 1."""
    existing = versions(model_root)
    return existing[-1] + 1 if existing else 1


def latest_version_dir(model_root):
    """The directory of the highest version (the one TF Serving serves), or None."""
    existing = versions(model_root)
    return os.path.join(model_root, str(existing[-1])) if existing else None


def write_version(model_root, write_fn):
    """Calls ``write_fn(tmp_dir)``, which must create ``tmp_dir``, then renames it into place.

    Returns the final directory ``model_root/<version>``. The contents must not depend on the
    version number: a concurrent export may take the number first, and the next one is used.
    On any error the temporary directory is removed and nothing new is visible.
    """
    os.makedirs(model_root, exist_ok=True)
    version = next_version(model_root)
    tmp = os.path.join(model_root, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)  # left over by a killed export of this same pid number
    try:
        write_fn(tmp)
        for _ in range(_RENAME_ATTEMPTS):
            final = os.path.join(model_root, str(version))
            try:
                # Fails with EEXIST/ENOTEMPTY when a concurrent export already owns `final`.
                os.rename(tmp, final)
                return final
            except OSError:
                if not os.path.isdir(final):
                    raise
            version = max(version + 1, next_version(model_root))
        raise FileExistsError(f"Could not find a free version under {model_root} after {_RENAME_ATTEMPTS} attempts.")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
