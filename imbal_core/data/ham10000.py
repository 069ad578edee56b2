"""HAM10000 dermoscopy: metadata CSV + images anywhere under the folder, split by lesion."""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import ImageDataset, register_source
from .images import dataset_from_files, locate_images, read_table

HAM_CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
# The abbreviations spelled out (Tschandl et al., Sci. Data 2018), shown beside the class counts.
HAM_CLASS_NAMES = {
    "akiec": "actinic keratosis / intraepithelial carcinoma (Bowen's disease)",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis-like lesion",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevus",
    "vasc": "vascular lesion",
}
METADATA_FILE = "HAM10000_metadata.csv"


@register_source(
    "ham10000",
    description="HAM10000 dermoscopy (7 classes), split 70/10/20 by lesion_id so no lesion is in two splits.",
    layout=(
        f"a folder holding {METADATA_FILE} (columns lesion_id, image_id, dx) and the <image_id>.jpg files "
        "anywhere below it (e.g. HAM10000_images_part_1/ and HAM10000_images_part_2/, or images/)"
    ),
)
def load_ham10000(path: Path, image_size: int, split_seed: int) -> ImageDataset:
    csv = path if path.is_file() else next(path.rglob(METADATA_FILE), None)
    if csv is None:
        raise DataError(f"no {METADATA_FILE} found under {path}; download it with the HAM10000 images")
    table = read_table(csv, ["lesion_id", "image_id", "dx"], "HAM10000 metadata")
    unknown = sorted(set(table["dx"]) - set(HAM_CLASSES))
    if unknown:
        raise DataError(f"unknown dx label(s) {unknown} in {csv}; expected only {HAM_CLASSES}")
    paths = locate_images(table["image_id"].tolist(), csv.parent, "HAM10000 metadata")
    labels = table["dx"].map(HAM_CLASSES.index).to_numpy()
    return dataset_from_files(
        "ham10000",
        HAM_CLASSES,
        paths,
        labels,
        table,
        image_size,
        split_seed,
        groups=table["lesion_id"].to_numpy(),
        description="HAM10000 dermoscopy, lesion-grouped split",
    )
