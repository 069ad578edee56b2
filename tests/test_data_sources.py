"""Each data source on tiny fixture files written in the real formats, and on ../shared/data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imbal_core.data import DATA_SOURCES, load_dataset
from imbal_core.data.synthetic import CLASS_NAMES, generate, natural_counts
from imbal_core.errors import DataError

from .conftest import shared_path

HAM = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def _write_images(folder: Path, names: list[str], rng: np.random.Generator, suffix: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / f"{name}{suffix}")


@pytest.fixture
def ham_folder(tmp_path: Path) -> Path:
    """HAM10000 layout: metadata CSV + images split over the two official part folders."""
    rng = np.random.default_rng(0)
    rows = []
    for c, dx in enumerate(HAM):
        for lesion in range(6):  # 6 lesions per class, 2 images each
            for k in range(2):
                rows.append({"lesion_id": f"HAM_{c}{lesion}", "image_id": f"ISIC_{c}{lesion}{k}", "dx": dx})
    table = pd.DataFrame(rows)
    table.to_csv(tmp_path / "HAM10000_metadata.csv", index=False)
    half = len(table) // 2
    _write_images(tmp_path / "HAM10000_images_part_1", table.image_id[:half].tolist(), rng)
    _write_images(tmp_path / "HAM10000_images_part_2", table.image_id[half:].tolist(), rng)
    return tmp_path


def test_registry_lists_every_source():
    assert set(DATA_SOURCES.names()) == {"synthetic", "medmnist", "ham10000", "isic2018", "aptos2019", "folder"}


def test_synthetic_is_deterministic_and_long_tailed():
    a, labels_a = generate(300, 28, seed=3)
    b, labels_b = generate(300, 28, seed=3)
    c, _ = generate(300, 28, seed=4)
    assert a.shape == (300, 28, 28, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(labels_a, labels_b)
    assert not np.array_equal(a, c)
    counts = np.bincount(labels_a, minlength=7)
    assert counts.tolist() == natural_counts(300).tolist()
    assert counts[0] / counts.min() > 20  # HAM10000-shaped tail
    assert len(set(CLASS_NAMES)) == 7


def test_synthetic_any_size_and_cached(tmp_path: Path):
    first = load_dataset("synthetic", image_size=40, n_images=200, cache_dir=tmp_path)
    assert first.image_shape == (40, 40, 3)
    assert len([f for f in tmp_path.iterdir() if f.is_dir()]) == 1
    second = load_dataset("synthetic", image_size=40, n_images=200, cache_dir=tmp_path)
    assert isinstance(second.train.images, np.memmap)  # read memory-mapped: nothing is read until needed
    for split in ("train", "val", "test"):
        assert np.array_equal(first.splits[split].images, second.splits[split].images)
        assert list(first.splits[split].ids) == list(second.splits[split].ids)
    with pytest.raises(ValueError, match="between 28 and 512"):
        generate(10, 600)


def test_ham10000_fixture_groups_lesions(ham_folder: Path, tmp_path: Path):
    ds = load_dataset("ham10000", path=ham_folder, image_size=28, cache_dir=tmp_path / "cache")
    assert ds.class_names == HAM
    assert sum(len(s) for s in ds.splits.values()) == 84
    lesions = {name: set(split.metadata["lesion_id"]) for name, split in ds.splits.items()}
    assert not lesions["train"] & lesions["test"] and not lesions["train"] & lesions["val"]
    assert not lesions["val"] & lesions["test"]


def test_ham10000_bad_inputs_name_the_problem(ham_folder: Path, tmp_path: Path):
    csv = ham_folder / "HAM10000_metadata.csv"
    table = pd.read_csv(csv)
    table.drop(columns="lesion_id").to_csv(csv, index=False)
    with pytest.raises(DataError, match="lesion_id"):
        load_dataset("ham10000", path=ham_folder, use_cache=False)
    table.assign(dx=["melanoma"] + table.dx[1:].tolist()).to_csv(csv, index=False)
    with pytest.raises(DataError, match="melanoma"):
        load_dataset("ham10000", path=ham_folder, use_cache=False)
    table.to_csv(csv, index=False)
    victim = next(ham_folder.rglob("ISIC_000.jpg"))
    victim.write_bytes(victim.read_bytes()[:60])  # truncated JPEG
    with pytest.raises(DataError, match="ISIC_000.jpg.*truncated"):
        load_dataset("ham10000", path=ham_folder, use_cache=False)
    victim.unlink()
    with pytest.raises(DataError, match="not found"):
        load_dataset("ham10000", path=ham_folder, use_cache=False)


def test_missing_path_explains_layout(tmp_path: Path):
    with pytest.raises(DataError, match="HAM10000_metadata.csv"):
        load_dataset("ham10000", path=tmp_path / "nowhere")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("ham10000")


def _npz(path: Path, labels_2d: bool = True, drop: str | None = None, grey: bool = False) -> Path:
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 50), ("val", 10), ("test", 20)):
        shape = (n, 28, 28) if grey else (n, 28, 28, 3)
        arrays[f"{split}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        labels = np.arange(n) % 5
        arrays[f"{split}_labels"] = labels[:, None] if labels_2d else labels
    if drop:
        del arrays[drop]
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("labels_2d,grey", [(True, False), (False, True)])
def test_medmnist_npz_layouts(tmp_path: Path, labels_2d: bool, grey: bool):
    file = _npz(tmp_path / "retinamnist.npz", labels_2d, grey=grey)
    ds = load_dataset("medmnist", path=file, image_size=32, use_cache=False)
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [50, 10, 20]
    assert ds.image_shape == (32, 32, 3)
    assert ds.class_names[0] == "grade_0"


def test_medmnist_errors(tmp_path: Path):
    with pytest.raises(DataError, match="val_labels"):
        load_dataset("medmnist", path=_npz(tmp_path / "x.npz", drop="val_labels"), use_cache=False)
    with pytest.raises(DataError, match="offline|not found"):
        load_dataset("medmnist", path=tmp_path, flag="retinamnist", use_cache=False)


def test_medmnist_shared_retinamnist():
    ds = load_dataset("medmnist", path=shared_path("medmnist", "retinamnist.npz"))
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [1080, 120, 400]
    assert ds.train.class_counts(5).tolist() == [486, 128, 206, 194, 66]


def test_isic2018_single_and_official_splits(tmp_path: Path):
    rng = np.random.default_rng(1)
    columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]

    def write(name: str, n: int) -> None:
        ids = [f"{name}_{i}" for i in range(n)]
        onehot = np.eye(7, dtype=int)[np.arange(n) % 7]
        pd.DataFrame(onehot, columns=columns).assign(image=ids)[["image"] + columns].to_csv(
            tmp_path / f"ISIC2018_Task3_{name}_GroundTruth.csv", index=False
        )
        _write_images(tmp_path / f"{name}_images", ids, rng)

    write("Training", 42)
    write("Validation", 14)
    write("Test", 21)
    ds = load_dataset("isic2018", path=tmp_path, use_cache=False)
    assert [len(ds.splits[s]) for s in ("train", "val", "test")] == [42, 14, 21]
    assert ds.class_names == HAM
    assert ds.test.labels[0] == HAM.index("mel") and ds.test.labels[1] == HAM.index("nv")
    single = load_dataset("isic2018", path=tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv", use_cache=False)
    assert sum(len(s) for s in single.splits.values()) == 42 and single.whole_test_set == ""

    # Issue 40: the Test ground truth alone was split 70/10/20 and `evaluate --split test` scored a fifth of it
    from imbal_core.engine import TrainConfig, train
    from imbal_core.engine.evaluate import evaluate_run
    from imbal_core.errors import DataError
    from imbal_core.runs import RunStore

    test_csv = tmp_path / "ISIC2018_Task3_Test_GroundTruth.csv"
    assert load_dataset("isic2018", path=test_csv, cache_dir=tmp_path / "cache").whole_test_set == test_csv.name
    assert load_dataset("isic2018", path=test_csv, cache_dir=tmp_path / "cache").whole_test_set == test_csv.name
    store = RunStore(tmp_path / "store")
    training = tmp_path / "ISIC2018_Task3_Training_GroundTruth.csv"
    config = TrainConfig(data="isic2018", data_path=str(training), epochs=1, batch_size=16, device="cpu")
    run_id = train(config, store)
    with pytest.raises(DataError, match=r"is a whole test set; its test split is a share .*--split all"):
        evaluate_run(store, run_id, "isic2018", str(test_csv), split="test", device="cpu")
    assert evaluate_run(store, run_id, "isic2018", str(test_csv), device="cpu")["n_images"] == 21


def test_aptos_and_folder_sources(tmp_path: Path):
    rng = np.random.default_rng(2)
    aptos = tmp_path / "aptos"
    ids = [f"id{i:03d}" for i in range(25)]
    _write_images(aptos / "train_images", ids, rng, ".png")
    pd.DataFrame({"id_code": ids, "diagnosis": np.arange(25) % 5}).to_csv(aptos / "train.csv", index=False)
    ds = load_dataset("aptos2019", path=aptos, use_cache=False)
    assert ds.num_classes == 5 and sum(len(s) for s in ds.splits.values()) == 25
    pd.DataFrame({"id_code": ids, "diagnosis": [7] * 25}).to_csv(aptos / "train.csv", index=False)
    with pytest.raises(DataError, match="diagnosis value"):
        load_dataset("aptos2019", path=aptos, use_cache=False)

    root = tmp_path / "folder"
    for name in ("benign", "malignant"):
        _write_images(root / name, [f"{name}{i}" for i in range(10)], rng, ".png")
    ds = load_dataset("folder", path=root, use_cache=False)
    assert ds.class_names == ["benign", "malignant"] and sum(len(s) for s in ds.splits.values()) == 20
    pd.DataFrame(
        {
            "path": [f"folder/benign/benign{i}.png" for i in range(10)]
            + [f"folder/malignant/malignant{i}.png" for i in range(10)],
            "label": ["b"] * 10 + ["m"] * 10,
        }
    ).to_csv(tmp_path / "list.csv", index=False)
    ds = load_dataset("folder", path=tmp_path / "list.csv", use_cache=False)
    assert ds.class_names == ["b", "m"]


def test_ham10000_shared_data():
    ds = load_dataset("ham10000", path=shared_path("ham10000"))
    assert sum(len(s) for s in ds.splits.values()) == 10015
    assert ds.num_classes == 7
    counts = ds.counts_table().sum(axis=1)
    assert counts.to_dict() == {"akiec": 327, "bcc": 514, "bkl": 1099, "df": 115, "mel": 1113, "nv": 6705, "vasc": 142}
    lesions = {name: set(split.metadata["lesion_id"]) for name, split in ds.splits.items()}
    assert not lesions["train"] & lesions["val"] and not lesions["train"] & lesions["test"]
    assert not lesions["val"] & lesions["test"]


def test_a_set_too_large_for_the_memory_is_refused_before_decoding_with_the_numbers(tmp_path: Path, monkeypatch):
    from imbal_core.data import images

    monkeypatch.setattr(images, "available_memory", lambda: 100 * 2**20)  # 100 MiB available
    decoded = []
    monkeypatch.setattr(images, "read_images", lambda paths, size: decoded.append(paths))
    with pytest.raises(DataError, match=r"ham10000 at 224 px takes 0\.\d GB in memory .* 0\.1 GB available"):
        images.dataset_from_files(
            "ham10000", ["a", "b"], [Path(f"{i}.jpg") for i in range(3000)], np.zeros(3000), pd.DataFrame(), 224, 0
        )
    assert decoded == []  # refused before any image was read


def test_a_cache_built_twice_at_once_keeps_the_first_complete_folder(tmp_path: Path):
    """Two processes building the same cache: the second finds the first's complete folder and keeps it."""
    from imbal_core.data import cache

    dataset = load_dataset("synthetic", image_size=32, n_images=100, use_cache=False)
    cache.save(dataset, tmp_path, "k")
    first = (tmp_path / "k" / "train_images.npy").stat().st_ino
    cache.save(dataset, tmp_path, "k")
    assert (tmp_path / "k" / "train_images.npy").stat().st_ino == first
    assert [p.name for p in tmp_path.iterdir()] == ["k"]  # no temporary folder left behind
    loaded = cache.load(tmp_path, "k")
    assert loaded is not None and np.array_equal(loaded.train.images, dataset.train.images)
