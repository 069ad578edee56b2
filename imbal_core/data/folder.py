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
        _refuse_split_column(table, path)
        table["label"] = _checked_labels(table["label"], path)
        no_path = table["path"].isna() | (table["path"].astype("string").str.strip() == "")
        if no_path.any():
            raise DataError(f"{path}: data row(s) {_rows(no_path)} have no path; give every row its image's path")
        files = [_inside_csv_folder(path, row, relative) for row, relative in enumerate(table["path"].astype(str), 1)]
        _refuse_repeated_files(files, table["label"], path)
    else:
        folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        _refuse_split_folders(folders, path)
        rows = []
        for sub in folders:
            # hidden files (macOS's ._x.png, .DS_Store) are no images
            files = sorted(f for f in sub.rglob("*") if not f.is_dir() and not f.name.startswith("."))
            images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
            if not images:  # a class whose folder is empty, or holds files of another type, would vanish
                kinds = sorted({f.suffix.lower() or "(no suffix)" for f in files})
                held = f"{len(files)} file(s) ({', '.join(kinds[:5])}) but " if files else ""
                raise DataError(
                    f"class folder {sub} holds {held}no image of the types read ({', '.join(IMAGE_SUFFIXES)}): add "
                    "its images (converted to PNG if they are of another type), or move the folder out"
                )
            rows += [(f, sub.name) for f in images]
        if not rows:
            raise DataError(f"no images in class sub-folders of {path}; expected {path}/<class_name>/<image>.png")
        files = [r[0] for r in rows]
        names = _checked_labels(pd.Series([sub.name for sub in folders]), path, what="class folder names")
        table = pd.DataFrame({"path": [str(f.relative_to(path)) for f in files], "label": [r[1] for r in rows]})
        table["label"] = table["label"].map(dict(zip([sub.name for sub in folders], names)))
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


def _checked_labels(labels: pd.Series, where: Path, what: str = "labels") -> pd.Series:
    """Labels (a CSV's, or the class folders' names) as text without surrounding spaces. Empty labels, control
    characters, and labels that differ only by such spaces, letter case or Unicode form (which would silently become
    two classes that read the same) are refused, with their data rows or folder names."""
    text = labels.astype("string")
    folders = what != "labels"

    def at(mask: pd.Series) -> str:
        return f"the folders {sorted(set(text[mask]))!r}" if folders else f"data row(s) {_rows(mask)}"

    missing = text.isna() | (text.str.strip() == "")
    if missing.any():
        raise DataError(f"{where}: {at(missing)} have no label; give every image a label or drop its row")
    control = text.map(lambda label: any(unicodedata.category(ch) == "Cc" for ch in label))
    if control.any():  # they would reach terminals and pages as escape codes (never echoed here)
        shown = f"{int(control.sum())} class folder(s)" if folders else f"the labels of data row(s) {_rows(control)}"
        raise DataError(f"{where}: {shown} hold control characters; rename them")
    stripped = text.str.strip()
    spelling = stripped.map(lambda label: unicodedata.normalize("NFC", label).casefold())
    for _, spellings in stripped.groupby(spelling):
        if text[spellings.index].nunique() > 1:
            variants = sorted(set(text[spellings.index]))
            where_found = "" if folders else f" (data rows {_rows(spelling == spelling[spellings.index[0]])})"
            raise DataError(
                f"{where}: the {what} {variants}{where_found} differ only by spaces around them, letter case or "
                "Unicode form, which would make them different classes that read the same: write each one way"
            )
    return stripped.map(lambda label: unicodedata.normalize("NFC", label)).astype(str)


SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "test", "testing"}


def _refuse_split_column(table: pd.DataFrame, csv: Path) -> None:
    """A split column says which images are for testing; this source splits by itself, so it would be ignored."""
    named = [c for c in table.columns if str(c).strip().lower() in ("split", "fold", "subset", "partition")]
    if named:
        raise DataError(
            f"{csv} has a {named[0]!r} column, which the folder source would ignore: it splits the images 70/10/20 "
            "itself (--split-seed). To keep your own test images, list them in a CSV of their own and score a "
            "trained run on it with `evaluate RUN --data folder --path test.csv`; or drop the column"
        )


def _refuse_split_folders(folders: list[Path], root: Path) -> None:
    """root/train/<class>, root/test/<class> would read as the classes "train" and "test"."""
    named = [f for f in folders if f.name.lower() in SPLIT_NAMES]
    inner = [{c.name for c in f.iterdir() if c.is_dir()} for f in named]
    if len(named) >= 2 and all(inner) and len(set(map(frozenset, inner))) == 1:
        raise DataError(
            f"{root} holds split folders ({', '.join(f.name for f in named)}) with the same class folders inside "
            f"({', '.join(sorted(inner[0])[:5])}): they would be read as classes named after the splits. Point "
            f"--path at one split's folder (e.g. {named[0]}), which the folder source splits itself"
        )


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
