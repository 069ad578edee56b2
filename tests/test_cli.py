"""The CLI end to end on tiny data: train with progress, runs, export, errors with exit code 2."""

from __future__ import annotations

import csv
from pathlib import Path

from imbal_core.cli import main

TINY = ["--data-option", "n_images=700", "--batch-size", "64", "--device", "cpu"]


def test_train_then_export(tmp_path: Path, capsys):
    store = ["--store", str(tmp_path / "store")]
    assert main(store + ["train", "--method", "focal", "--epochs", "1", "--set", "gamma=1.5", *TINY]) == 0
    out = capsys.readouterr()
    assert "finished" in out.out and "epoch" in out.err  # tqdm draws on stderr
    assert main(store + ["runs"]) == 0
    listed = capsys.readouterr().out
    assert "focal" in listed and " 1/1 " in listed  # epochs done / epochs
    from imbal_core.engine import TrainConfig
    from imbal_core.runs import RunStore

    RunStore(tmp_path / "store").create_run(TrainConfig(method="ce").to_dict())
    assert main(store + ["runs"]) == 0  # a finished run beside one without a summary or progress yet
    listed = capsys.readouterr().out
    assert "queued" in listed and f" 0/{TrainConfig(method='ce').epochs} " in listed
    assert main(store + ["export", "--out", str(tmp_path / "tidy.csv")]) == 0
    with open(tmp_path / "tidy.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"focal"}
    assert any(r["metric"] == "recall" and r["class"] == "red_lacunae" for r in rows)


def test_sweep(tmp_path: Path, capsys):
    store = ["--store", str(tmp_path / "store")]
    assert (
        main(
            store
            + [
                "sweep",
                "--methods",
                "ce,balanced_softmax",
                "--ratios",
                "10",
                "--seeds",
                "0,1",
                "--epochs",
                "1",
                "--quiet",
                *TINY,
            ]
        )
        == 0
    )
    assert "4 finished, 0 failed" in capsys.readouterr().out


def test_listings(capsys):
    assert main(["methods"]) == 0
    assert "ldam_drw" in capsys.readouterr().out
    assert main(["methods", "cb_loss"]) == 0
    assert "effective number" in capsys.readouterr().out.lower()
    assert main(["datasets"]) == 0
    assert "HAM10000_metadata.csv" in capsys.readouterr().out


def test_bad_input_exits_2_with_message(tmp_path: Path, capsys):
    store = ["--store", str(tmp_path / "store")]
    assert main(store + ["train", "--ratio", "0.5", *TINY]) == 2
    assert "ratio must be a finite number >= 1" in capsys.readouterr().err
    assert main(store + ["train", "--method", "focal", "--set", "gama=2", *TINY]) == 2
    assert "no setting(s) ['gama']" in capsys.readouterr().err
    assert main(store + ["train", "--data", "ham10000", "--path", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def documented_commands() -> list[tuple[str, str]]:
    """(file, command line) for every `python -m imbal_core ...` or `imbal-lab ...` in the README and docs/."""
    import re

    root = Path(__file__).resolve().parents[1]
    found = []
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        text = re.sub(r"\\\n\s*", " ", doc.read_text())  # shell lines continued with a backslash
        text = re.sub(r"\s#\s.*", "", text)  # comments after a command
        for match in re.finditer(r"(?:-m imbal_core|imbal-lab)\s+([^`\n|]*)", text):
            found.append((doc.name, match.group(1).strip()))
    return found


def test_every_command_in_the_readme_and_docs_exists_in_the_cli():
    """A newcomer copies these lines: each names a real subcommand, and every --option it uses is one of that
    subcommand's (or a global one, before it)."""
    import argparse
    import shlex

    from imbal_core.cli import build_parser

    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    global_options = {o for a in parser._actions for o in a.option_strings}
    commands = documented_commands()
    assert len(commands) > 40  # the README's command section and the docs' protocols
    problems = []
    for doc, line in commands:
        words = shlex.split(line.replace("~", "HOME"))
        while words and words[0] in global_options:  # --store DIR, --help
            words = words[2:] if words[0] == "--store" else words[1:]
        if not words or words[0] == "...":  # "python -m imbal_core ..." stands for any command
            continue
        name, options = words[0], [w.split("=")[0] for w in words[1:] if w.startswith("--")]
        if name not in subcommands:
            problems.append(f"{doc}: {line!r}: no subcommand {name!r}")
            continue
        if name == "app":  # Streamlit's own options follow it
            continue
        known = {o for a in subcommands[name]._actions for o in a.option_strings}
        problems += [f"{doc}: {line!r}: {name} has no {option}" for option in options if option not in known]
    assert not problems, "\n".join(problems)


def test_method_settings_in_the_readme_and_docs_are_the_methods_own():
    """Issue 40: the README and docs state methods' settings as the code has them. Every `--set KEY=VALUE` in a
    documented command is a setting of its --method (ce when none is given) with a value that setting accepts, and
    docs/methods.md (the cards, every default) is `methods --markdown` (test_app checks that file whole)."""
    import shlex

    from imbal_core.errors import ConfigError
    from imbal_core.methods import METHODS

    problems, checked = [], 0
    for doc, line in documented_commands():
        words = shlex.split(line.replace("~", "HOME"))
        method = words[words.index("--method") + 1] if "--method" in words else "ce"
        values = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "--set"]
        if method not in METHODS:
            continue  # a placeholder such as METHOD; the command test names unknown options
        settings = {s.name: s for s in METHODS.get(method).card.settings}
        for value in values:
            key, _, text = value.partition("=")
            checked += 1
            if key not in settings:
                problems.append(f"{doc}: {line!r}: {method} has no setting {key!r}")
                continue
            try:
                settings[key].coerce(text)
            except ConfigError as err:
                problems.append(f"{doc}: {line!r}: {err}")
    assert checked >= 4 and not problems, "\n".join(problems)
