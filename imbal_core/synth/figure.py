"""Captioned image sheets for slides: rows of images at native size (scaled by whole pixels), a title, row labels and
captions under the images. Text is wrapped at spaces only, so no word is ever broken; a column is as wide as its
longest caption word needs.

    png = image_sheet("diffusion_ham10000_64 · df · guidance 2", [SheetRow("synthetic", samples)])
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

GAP = 6  # px between cells, before scaling
TEXT_SIZE = 11  # caption font size, before scaling
LABEL_WIDTH = 90  # row label column, before scaling
BACKGROUND, INK = (255, 255, 255), (20, 20, 20)


@dataclass
class SheetRow:
    """One row: a label at its left, images (HWC or HW uint8; None leaves a cell empty), a caption under each."""

    label: str
    images: Sequence[np.ndarray | None]
    captions: Sequence[str] = field(default_factory=list)


def wrap_words(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: float) -> list[str]:
    """Lines of at most `width` px, broken at spaces only (a word wider than `width` gets a line of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def image_sheet(title: str, rows: list[SheetRow], notes: str = "", scale: int = 2) -> bytes:
    """A PNG: `title` on top, then the rows, then `notes`; images enlarged `scale` times by pixel repetition."""
    if not rows or not any(image is not None for row in rows for image in row.images):
        raise ValueError("image_sheet needs at least one image")
    if not isinstance(scale, int) or not 1 <= scale <= 8:
        raise ValueError(f"scale must be an integer in [1, 8]; got {scale!r}")
    font = ImageFont.load_default(size=TEXT_SIZE * scale)
    line_height = round(TEXT_SIZE * scale * 1.3)
    gap, label_width = GAP * scale, LABEL_WIDTH * scale
    tile = max(image.shape[0] for row in rows for image in row.images if image is not None) * scale
    columns = max(len(row.images) for row in rows)
    # A column fits its image and the widest word of any caption under it: captions never break a word.
    widths = [tile] * columns
    for row in rows:
        for j, caption in enumerate(row.captions):
            widths[j] = max(widths[j], *(round(font.getlength(word)) for word in caption.split() or [""]))
    sheet_width = label_width + gap + sum(widths) + gap * (columns - 1) + 2 * gap
    text_width = sheet_width - 2 * gap
    title_lines, note_lines = wrap_words(title, font, text_width), wrap_words(notes, font, text_width)
    row_heights = []
    for row in rows:
        caption_lines = max(
            (len(wrap_words(caption, font, widths[j])) for j, caption in enumerate(row.captions)), default=0
        )
        label_lines = len(wrap_words(row.label, font, label_width))
        row_heights.append(max(tile + caption_lines * line_height, label_lines * line_height))
    height = gap + len(title_lines) * line_height + gap + sum(row_heights) + gap * len(rows)
    height += len(note_lines) * line_height + gap

    sheet = Image.new("RGB", (sheet_width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    y = gap
    for line in title_lines:
        draw.text((gap, y), line, fill=INK, font=font)
        y += line_height
    y += gap
    for row, row_height in zip(rows, row_heights):
        for k, line in enumerate(wrap_words(row.label, font, label_width)):
            draw.text((gap, y + k * line_height), line, fill=INK, font=font)
        x = gap + label_width + gap
        for j in range(columns):
            image = row.images[j] if j < len(row.images) else None
            if image is not None:
                sheet.paste(_enlarged(image, scale), (x + (widths[j] - tile) // 2, y))
            caption = row.captions[j] if j < len(row.captions) else ""
            for k, line in enumerate(wrap_words(caption, font, widths[j])):
                draw.text((x, y + tile + k * line_height), line, fill=INK, font=font)
            x += widths[j] + gap
        y += row_height + gap
    for line in note_lines:
        draw.text((gap, y), line, fill=INK, font=font)
        y += line_height
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()


def _enlarged(image: np.ndarray, scale: int) -> Image.Image:
    pixels = image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image
    picture = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    # nearest: every pixel the model made stays visible as it is, only larger
    return picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST)
