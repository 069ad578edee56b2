"""Slide figures: captions are wrapped at spaces only, images keep their pixels, bad input is named."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFont

from imbal_core.synth.figure import GAP, LABEL_WIDTH, SheetRow, image_sheet, wrap_words


def test_wrapping_never_breaks_a_word_and_keeps_lines_within_the_width():
    font = ImageFont.load_default(size=11)
    text = "diffusion_ham10000_64 · class df (80 training images) · guidance 2 · 25 DDIM steps · seed 0"
    for width in (40, 90, 200, 1000):
        lines = wrap_words(text, font, width)
        assert " ".join(lines).split() == text.split()  # every word whole, in order
        for line in lines:
            assert font.getlength(line) <= width or " " not in line  # only a lone word may be wider
    assert wrap_words("", font, 100) == []


def test_sheet_keeps_each_pixel_and_fits_its_longest_caption_word():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    grey = rng.integers(0, 256, (16, 16, 1), dtype=np.uint8)
    long_word = "basal_cell_carcinoma_with_a_long_name"
    png = image_sheet(
        "a title that is long enough to wrap over several lines of the sheet " * 3,
        [
            SheetRow("synthetic", images, ["df", "df", long_word]),
            SheetRow("real", [grey, None], ["vasc", ""]),
        ],
        notes="the generator's limits in one sentence",
        scale=2,
    )
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    font = ImageFont.load_default(size=22)
    assert sheet.shape[1] >= 2 * (GAP + LABEL_WIDTH) + 2 * 32 + font.getlength(long_word)
    # The first image, enlarged 2x by pixel repetition, is somewhere on the sheet exactly.
    enlarged = images[0].repeat(2, axis=0).repeat(2, axis=1)
    top_left = np.argwhere((sheet == enlarged[0, 0]).all(axis=2))
    assert any(
        np.array_equal(sheet[y : y + 32, x : x + 32], enlarged)
        for y, x in top_left
        if y + 32 <= sheet.shape[0] and x + 32 <= sheet.shape[1]
    )


def test_sheet_names_bad_input():
    with pytest.raises(ValueError, match="at least one image"):
        image_sheet("t", [SheetRow("empty", [None])])
    with pytest.raises(ValueError, match="scale must be an integer in"):
        image_sheet("t", [SheetRow("r", [np.zeros((4, 4, 3), np.uint8)])], scale=0)
