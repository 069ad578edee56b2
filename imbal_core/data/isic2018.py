"""ISIC 2018 Task 3: one-hot ground-truth CSV(s) + images; same classes as HAM10000."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .base import ImageDataset, Split, register_source
from .ham10000 import HAM_CLASSES
from .images import dataset_from_files, locate_images, read_images, read_table

ONE_HOT_COLUMNS = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
SPLIT_WORDS = {"train": "Training", "val": "Validation", "test": "Test"}


def _labels(table: pd.DataFrame, csv: Path) -> np.ndarray:
    onehot = table[ONE_HOT_COLUMNS].to_numpy(dtype=float)
    bad = np.flatnonzero(onehot.sum(axis=1) != 1)
    if len(bad):
        raise DataError(f"{csv}: row(s) {bad[:3].tolist()} do not have exactly one class column set to 1")
    names = np.array(ONE_HOT_COLUMNS)[onehot.argmax(axis=1)]
    return np.array([HAM_CLASSES.index(n.lower()) for n in names])


@register_source(
    "isic2018",
    description="ISIC 2018 Task 3 (7 classes, HAM10000's class mapping); a natural external test set.",
    layout=(
        "a folder with ISIC2018_Task3_*_GroundTruth.csv file(s) (columns image, MEL, NV, BCC, AKIEC, BKL, "
        "DF, VASC) and the <image>.jpg files anywhere below it. With Training/Validation/Test files each "
        "becomes that split; with one file it is split 70/10/20 (a Test file alone is scored whole: `evaluate` "
        "refuses --split test on it)"
    ),
)
def load_isic2018(path: Path, image_size: int, split_seed: int) -> ImageDataset:
    csvs = [path] if path.is_file() else sorted(path.rglob("*GroundTruth*.csv"))
    if not csvs:
        raise DataError(f"no *GroundTruth*.csv under {path}; expected ISIC2018_Task3_Training_GroundTruth.csv etc.")
    tables = {csv: read_table(csv, ["image", *ONE_HOT_COLUMNS], "ISIC 2018 ground truth") for csv in csvs}
    by_split = {s: [c for c in csvs if word in c.name] for s, word in SPLIT_WORDS.items()}
    root = path if path.is_dir() else path.parent
    if len(csvs) == 1 or not any(by_split.values()):
        table = pd.concat(tables.values(), ignore_index=True)
        paths = locate_images(table["image"].tolist(), root, "ISIC 2018 ground truth")
        labels = np.concatenate([_labels(t, c) for c, t in tables.items()])
        dataset = dataset_from_files(
            "isic2018",
            HAM_CLASSES,
            paths,
            labels,
            table,
            image_size,
            split_seed,
            description="ISIC 2018 Task 3, stratified split",
        )
        test_alone = len(csvs) == 1 and SPLIT_WORDS["test"] in csvs[0].name
        return replace(dataset, whole_test_set=csvs[0].name) if test_alone else dataset
    splits = {}
    for split, files in by_split.items():
        table = pd.concat([tables[c] for c in files], ignore_index=True) if files else pd.DataFrame(columns=["image"])
        paths = locate_images(table["image"].tolist(), root, "ISIC 2018 ground truth")
        labels = np.concatenate([_labels(tables[c], c) for c in files]) if files else np.zeros(0, np.int64)
        ids = np.array([p.stem for p in paths], dtype=str)
        splits[split] = Split(read_images(paths, image_size), labels, ids, table.reset_index(drop=True))
    return ImageDataset("isic2018", HAM_CLASSES, splits, "ISIC 2018 Task 3, official splits")
