"""Any labelled image collection: one sub-folder per class, or a CSV of (path, label)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pandas as pd

from ..errors import DataError
from .base import ImageDataset, register_source
from .images import IMAGE_SUFFIXES, dataset_from_files, read_table


@register_source(
    "folder",
    description="Your own images: one sub-folder per class, or a CSV with columns path, label.",
    layout="root/<class_name>/<image files>, or a CSV file with columns path (relative to the CSV, inside its folder) "
    "and label",
)
def load_folder(path: Path, image_size: int, split_seed: int) -> ImageDataset:
    if path.is_file():
        table = read_table(path, ["path", "label"], "image list")
        table["label"] = _checked_labels(table["label"], path)
        files = [_inside_csv_folder(path, row, relative) for row, relative in enumerate(table["path"].astype(str), 1)]
        _refuse_repeated_files(files, table["label"], path)
    else:
        rows = []
        for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(f for f in sub.rglob("*") if not f.is_dir())
            images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            if files and not images:  # a class whose files are all of another type would vanish without a word
                kinds = sorted({f.suffix.lower() or "(no suffix)" for f in files})
                raise DataError(
                    f"class folder {sub} holds {len(files)} file(s) ({', '.join(kinds[:5])}) but no image of the "
                    f"types read ({', '.join(IMAGE_SUFFIXES)}): convert them (e.g. to PNG), or move the folder out"
                )
            rows += [(f, sub.name) for f in images]
        if not rows:
            raise DataError(f"no images in class sub-folders of {path}; expected {path}/<class_name>/<image>.png")
        files = [r[0] for r in rows]
        table = pd.DataFrame({"path": [str(f.relative_to(path)) for f in files], "label": [r[1] for r in rows]})
    class_names = sorted(table["label"].unique())
    if len(class_names) < 2:
        raise DataError(f"{path} holds only {len(class_names)} class(es); a classifier needs at least 2")
    labels = table["label"].map(class_names.index).to_numpy()
    return dataset_from_files(
        path.name, class_names, files, labels, table, image_size, split_seed, description=f"folder {path}"
    )


def _inside_csv_folder(csv: Path, row: int, relative: str) -> Path:
    """Data row `row`'s image file: `relative` to the CSV's folder, and inside it.

    The check is on the path as written (`..` and absolute paths), not on where links lead: a CSV must not
    reach other files, while a folder of images linked in by the data set's owner stays usable.
    """
    file = Path(os.path.normpath(csv.parent / relative))
    if not file.is_relative_to(csv.parent):
        raise DataError(
            f"row {row} of {csv}: path {relative!r} leads outside the CSV's folder {csv.parent}; give "
            "each image's path relative to the CSV, inside its folder (e.g. images/cat_1.png), and move "
            "the CSV up to the images' common folder if needed"
        )
    return file


def _rows(mask: pd.Series) -> str:
    """The 1-based data row numbers where `mask` holds (the first five)."""
    rows = [int(i) + 1 for i in mask[mask].index[:5]]
    return ", ".join(map(str, rows)) + (" ..." if int(mask.sum()) > 5 else "")


def _checked_labels(labels: pd.Series, csv: Path) -> pd.Series:
    """Labels as text without surrounding spaces; empty labels, and labels that differ only by such spaces (which
    would silently become two classes), are refused with their rows."""
    text = labels.astype("string")
    missing = text.isna() | (text.str.strip() == "")
    if missing.any():
        raise DataError(f"{csv}: data row(s) {_rows(missing)} have no label; give every image a label or drop its row")
    control = text.map(lambda label: any(unicodedata.category(ch) == "Cc" for ch in label))
    if control.any():  # they would reach terminals and pages as escape codes
        raise DataError(f"{csv}: the labels of data row(s) {_rows(control)} hold control characters; remove them")
    stripped = text.str.strip()
    # Labels that differ only in spaces around them, letter case or Unicode form (café written two ways) would be
    # different classes that read the same.
    spelling = stripped.map(lambda label: unicodedata.normalize("NFC", label).casefold())
    for _, spellings in stripped.groupby(spelling):
        if text[spellings.index].nunique() > 1:
            variants = sorted(set(text[spellings.index]))
            raise DataError(
                f"{csv}: the labels {variants} (data rows {_rows(spelling == spelling[spellings.index[0]])}) differ "
                "only by spaces around them, letter case or Unicode form, which would make them different "
                "classes: write each label one way"
            )
    return stripped.map(lambda label: unicodedata.normalize("NFC", label)).astype(str)


def _refuse_repeated_files(files: list[Path], labels: pd.Series, csv: Path) -> None:
    """An image listed twice would be split into training and test at once (and with two labels, taught both)."""
    seen: dict[Path, int] = {}
    for row, file in enumerate(files):
        if file in seen:
            first = seen[file]
            conflict = (
                f" with two labels ({labels.iloc[first]!r} and {labels.iloc[row]!r})"
                if labels.iloc[first] != labels.iloc[row]
                else ""
            )
            raise DataError(
                f"{csv}: data rows {first + 1} and {row + 1} list the same image{conflict}; an image listed twice "
                "could land in training and test at once: keep one row per image"
            )
        seen[file] = row
