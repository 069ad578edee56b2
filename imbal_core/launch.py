"""What the installed `imbal-lab` command adds to the CLI: its version (with the git commit in a checkout) and
`imbal-lab app`, which serves the Streamlit app from the checkout or from the installed package.

A wheel ships the app as package data in imbal_core/_app/ (app.py, app_pages/, .streamlit/config.toml) and the
pretrained runs in imbal_core/pretrained/ (see pyproject.toml); a checkout keeps them at the repository's root."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from . import __version__
from .errors import ConfigError
from .utils import IN_CHECKOUT, PACKAGE_ROOT, PRETRAINED_DIR, PRETRAINED_VARIABLE, REPO_ROOT

COMMAND = "imbal-lab"


def app_folder() -> Path:
    """The folder of app.py, app_pages/ and .streamlit/config.toml: the checkout's root, or imbal_core/_app/."""
    return REPO_ROOT if IN_CHECKOUT else PACKAGE_ROOT / "_app"


def git_description() -> str | None:
    """`git abc1234`, `git abc1234, modified` when tracked files have changes; None outside a git checkout."""
    if not IN_CHECKOUT:  # an installed package may sit in a venv inside some repository: that commit is not ours
        return None
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs
        return None
    if sha.returncode != 0 or not sha.stdout.strip():  # e.g. an unpacked source archive: no .git
        return None
    return f"git {sha.stdout.strip()}" + (", modified" if status.returncode == 0 and status.stdout.strip() else "")


def version_text() -> str:
    """`imbal-lab 0.1.0 (git abc1234, modified)` in a checkout, `imbal-lab 0.1.0` for an installed package."""
    git = git_description()
    return f"{COMMAND} {__version__}" + (f" ({git})" if git else "")


def server_options(folder: Path | None = None) -> list[str]:
    """The app's .streamlit/config.toml as Streamlit flags (`--server.address 127.0.0.1`, ...). Streamlit reads that
    file only from the current folder; `imbal-lab app` runs from any folder, so it passes the same options (those of
    `make app`: loopback only, no file watcher, headless, 10 MB uploads, no usage statistics) on the command line."""
    path = (folder or app_folder()) / ".streamlit" / "config.toml"
    config = tomllib.loads(path.read_text())
    flags = []
    for section, options in config.items():
        for key, value in options.items():
            flags += [f"--{section}.{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def app_command(streamlit_args: list[str]) -> list[str]:
    """`python -m streamlit run .../app.py` with the app's server options; an option also in `streamlit_args`
    (e.g. `--server.address 0.0.0.0`, to expose the app on purpose) takes the user's value."""
    folder = app_folder()
    script = folder / "app.py"
    if not script.is_file():
        raise ConfigError(
            f"the app is not at {script}; reinstall the package (`pip install .` in a clone of the "
            "repository) or run `make app` in the clone"
        )
    given = {arg.split("=", 1)[0] for arg in streamlit_args if arg.startswith("--")}
    options = server_options(folder)
    defaults = [
        part
        for flag, value in zip(options[::2], options[1::2], strict=True)
        if flag not in given
        for part in (flag, value)
    ]
    return [sys.executable, "-m", "streamlit", "run", str(script), *defaults, *streamlit_args]


def pretrained_note() -> str | None:
    """Why Compare and Explain would open without the shipped runs, and how to get them; None when they are there."""
    if (PRETRAINED_DIR / "runs.sqlite").is_file():
        return None
    return (
        f"note: no shipped runs at {PRETRAINED_DIR}, so Compare and Explain start with your runs only. They "
        "are the `pretrained/` folder of the repository (a wheel built from a clone ships them); point "
        f"{PRETRAINED_VARIABLE} at a copy of that folder to use them."
    )


def run_app(streamlit_args: list[str]) -> int:
    """Serve the app in this process's place (so a signal to this process reaches the server itself)."""
    command = app_command(streamlit_args)
    note = pretrained_note()
    if note:
        print(note, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":
        os.execv(sys.executable, command)
    return subprocess.call(command)
