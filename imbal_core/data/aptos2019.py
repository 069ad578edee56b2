"""APTOS 2019 blindness detection: train.csv (id_code, diagnosis 0-4) + fundus images."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import ImageDataset, register_source
from .images import dataset_from_files, locate_images, read_table

APTOS_CLASSES = ["0_no_dr", "1_mild", "2_moderate", "3_severe", "4_proliferative"]


@register_source(
    "aptos2019",
    description="APTOS 2019 diabetic retinopathy grades 0-4 (graded: report quadratic kappa).",
    layout="a folder with train.csv (columns id_code, diagnosis) and the <id_code>.png files anywhere below it",
)
def load_aptos2019(path: Path, image_size: int, split_seed: int) -> ImageDataset:
    csv = path if path.is_file() else path / "train.csv"
    if not csv.exists():
        raise DataError(f"no train.csv in {path}; expected columns id_code, diagnosis")
    table = read_table(csv, ["id_code", "diagnosis"], "APTOS label file")
    bad = sorted(set(table["diagnosis"]) - set(range(len(APTOS_CLASSES))))
    if bad:
        raise DataError(f"unknown diagnosis value(s) {bad} in {csv}; expected integers 0 to 4")
    paths = locate_images(table["id_code"].astype(str).tolist(), csv.parent, "APTOS label file")
    return dataset_from_files(
        "aptos2019",
        APTOS_CLASSES,
        paths,
        table["diagnosis"].to_numpy(),
        table,
        image_size,
        split_seed,
        description="APTOS 2019, stratified split",
    )
