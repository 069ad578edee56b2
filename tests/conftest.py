"""Shared fixtures: an isolated lab home per test session, tiny configs, real-data locations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = {"n_images": 700}  # synthetic images per tiny test data set (about 490 for training)


@pytest.fixture(autouse=True, scope="session")
def lab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("lab_home")
    os.environ["IMBAL_LAB_HOME"] = str(home)
    return home


@pytest.fixture(autouse=True)
def data_reads_unrestricted_after_each_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """AppTest runs app.py in this process, and the app restricts data reads through the environment
    (`utils.restrict_data_reads`): undone after each test, so the command-line tests read as the CLI does."""
    monkeypatch.delenv("IMBAL_LAB_DATA_ROOTS", raising=False)


@pytest.fixture
def store(tmp_path: Path):
    from imbal_core.runs import RunStore

    return RunStore(tmp_path / "store")


def tiny_config(**overrides):
    from imbal_core.engine import TrainConfig

    values = dict(data="synthetic", data_options=dict(TINY), epochs=1, batch_size=64, device="cpu", seed=0)
    values.update(overrides)
    return TrainConfig(**values)


def shared_path(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data is provided in CI)")
    return path


def assert_resume_matches_uninterrupted(store, config) -> None:
    """Train `config` straight through; train it again stopped after epoch 1 and resumed; same metrics."""
    import threading

    from imbal_core.engine import train

    full = train(config, store)
    stop = threading.Event()
    partial = train(
        config,
        store,
        stop_event=stop,
        progress=lambda e: stop.set() if e["event"] == "epoch" and e["epoch"] == 0 else None,
    )
    assert store.get_run(partial)["status"] == "stopped"
    assert store.get_run(partial)["summary"] is None
    assert train(None, store, resume=partial) == partial
    assert store.get_run(partial)["status"] == "finished"
    assert store.get_run(partial)["summary"] == store.get_run(full)["summary"]
