"""Burned-in text planted into real images, with the truth of where every token was drawn.

Cameras and photo stations burn patient names, IDs and exam dates into their pictures in many
ways; the corpus varies what matters to a text detector: fonts (Debian's DejaVu and Liberation),
sizes from 8 to 40 px, colours, an outline, a background band (black, a gradient, or none: the
text straight over the photo), rotations up to 10 degrees, and the place (corners, anywhere in
the image, over the face). Every planted token keeps its rotated box (the minimum-area rectangle
around its ink), so a redaction can be scored by how much of each box it covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_FOLDERS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/liberation"))
FONT_NAMES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSerif.ttf",
    "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", "LiberationMono-Regular.ttf",
    "LiberationSerif-Regular.ttf", "LiberationSansNarrow-Regular.ttf",
)
SURNAMES = ("MUELLER", "HOFFMANN", "OKONKWO", "FERREIRA", "LINDQVIST", "NAKAMURA", "ROSSI", "KOWALSKI")
GIVEN_NAMES = ("ANNA", "JOHN", "MARIA", "YUSUF", "LENA", "PEDRO", "KAITO", "SOFIA")
COLOURS = ((255, 255, 255), (255, 255, 0), (0, 0, 0), (255, 40, 40), (60, 255, 60), (0, 200, 255))
BACKGROUNDS = ("none", "black", "gradient", "outline")
PLACES = ("corner", "anywhere", "centre")


@dataclass(frozen=True)
class PlantedToken:
    """One token drawn into an image: its text and the four corners of its rotated box."""

    text: str
    corners: np.ndarray
    size: int

    def box_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The token's rotated box as a boolean mask of an image of ``shape``."""
        mask = np.zeros(shape, np.uint8)
        cv2.fillPoly(mask, [np.round(self.corners).astype(np.int32)], 1)
        return mask.astype(bool)


@dataclass(frozen=True)
class PlantedImage:
    """An image with text planted into it."""

    name: str
    rgb: np.ndarray
    tokens: tuple[PlantedToken, ...]


def font_paths() -> list[Path]:
    """The corpus fonts that are installed (fonts-dejavu-core, fonts-liberation)."""
    return [folder / name for folder in FONT_FOLDERS for name in FONT_NAMES if (folder / name).is_file()]


def random_token(rng: np.random.Generator) -> str:
    """A name, an ID, a date or a time as devices print them."""
    kind = rng.integers(6)
    if kind == 0:
        return f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN_NAMES)}"
    if kind == 1:
        return f"{rng.choice(SURNAMES)}, {rng.choice(GIVEN_NAMES).title()}"
    if kind == 2:
        return f"ID {rng.integers(10**6, 10**8)}"
    if kind == 3:
        return f"{rng.integers(1930, 2024)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"
    if kind == 4:
        return f"{rng.integers(1, 29):02d}.{rng.integers(1, 13):02d}.{rng.integers(1930, 2024)}"
    return f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}"


def _text_layer(text: str, font: ImageFont.FreeTypeFont, colour: tuple[int, int, int], background: str,
                rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """The token drawn on a transparent layer, and the layer of its ink alone (for the box)."""
    left, top, right, bottom = font.getbbox(text, stroke_width=2)
    pad = max(2, font.size // 5)
    size = (right - left + 2 * pad, bottom - top + 2 * pad)
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    ink = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    if background == "black":
        draw.rectangle((0, 0, *size), fill=(0, 0, 0, 255))
        colour = colour if sum(colour) > 150 else (255, 255, 255)
    elif background == "gradient":
        start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        for x in range(size[0]):
            shade = start + (end - start) * x / max(size[0] - 1, 1)
            draw.line((x, 0, x, size[1]), fill=(*shade.astype(int).tolist(), 255))
        mean = (start + end) / 2
        colour = (0, 0, 0) if mean.sum() > 380 else (255, 255, 255)
    origin = (pad - left, pad - top)
    stroke = {"stroke_width": max(1, font.size // 12),
              "stroke_fill": (0, 0, 0) if sum(colour) > 300 else (255, 255, 255)} if background == "outline" else {}
    draw.text(origin, text, font=font, fill=(*colour, 255), **stroke)
    ImageDraw.Draw(ink).text(origin, text, font=font, fill=255)
    return layer, ink


def plant(rgb: np.ndarray, rng: np.random.Generator, count: int, *, name: str = "",
          face_box: tuple[int, int, int, int] | None = None, sizes: tuple[int, int] = (8, 40)) -> PlantedImage:
    """``count`` tokens drawn into a copy of ``rgb`` at random places, styles and angles.

    Tokens do not overlap each other (a token hidden by another could not be read anyway).
    ``face_box`` (x0, y0, x1, y1) is where the ``centre`` place draws, when known.
    """
    canvas = Image.fromarray(rgb).convert("RGBA")
    height, width = rgb.shape[:2]
    occupied = np.zeros((height, width), bool)
    fonts = font_paths()
    tokens: list[PlantedToken] = []
    for _ in range(count * 20):
        if len(tokens) == count:
            break
        text = random_token(rng)
        size = int(rng.integers(sizes[0], sizes[1] + 1))
        font = ImageFont.truetype(str(fonts[rng.integers(len(fonts))]), size)
        background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
        layer, ink = _text_layer(text, font, COLOURS[rng.integers(len(COLOURS))], background, rng)
        angle = float(rng.uniform(-10, 10)) if rng.random() < 0.5 else 0.0
        layer = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
        ink = ink.rotate(angle, resample=Image.BICUBIC, expand=True)
        w, h = layer.size
        if w >= width - 4 or h >= height - 4:
            continue
        x, y = _place(PLACES[rng.integers(len(PLACES))], (w, h), (width, height), face_box, rng)
        ink_pixels = np.asarray(ink) > 64
        if occupied[y:y + h, x:x + w][ink_pixels].any() or not ink_pixels.any():
            continue
        if background == "none" and not _legible(np.asarray(layer)[ink_pixels][:, :3],
                                                 rgb[y:y + h, x:x + w][ink_pixels]):
            continue
        occupied[y:y + h, x:x + w] |= cv2.dilate(ink_pixels.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
        canvas.alpha_composite(layer, (x, y))
        points = np.argwhere(ink_pixels)[:, ::-1].astype(np.float32) + np.array([x, y], np.float32)
        corners = cv2.boxPoints(cv2.minAreaRect(points))
        tokens.append(PlantedToken(text, corners, size))
    return PlantedImage(name, np.asarray(canvas.convert("RGB")), tuple(tokens))


def _legible(ink: np.ndarray, under: np.ndarray) -> bool:
    """Whether the ink pixels stand out from the photo pixels ``under`` them, nearly everywhere.

    A device prints its overlay to be read; text in the colour of the photo behind it is
    unreadable to people and engines alike and would only measure the corpus, not the detector.
    """
    difference = np.abs(ink.astype(int) - under.astype(int)).max(axis=1)
    return bool(np.mean(difference >= 80) >= 0.95)


def _place(place: str, size: tuple[int, int], image: tuple[int, int], face_box: tuple[int, int, int, int] | None,
           rng: np.random.Generator) -> tuple[int, int]:
    """Top-left corner for a layer of ``size`` in an image of ``image`` size."""
    (w, h), (width, height) = size, image
    if place == "corner":
        return (int(rng.choice([2, width - w - 2])), int(rng.choice([2, height - h - 2])))
    if place == "centre":
        x0, y0, x1, y1 = face_box or (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
        cx, cy = rng.integers(x0, max(x1, x0 + 1)), rng.integers(y0, max(y1, y0 + 1))
        return (int(np.clip(cx - w // 2, 0, width - w)), int(np.clip(cy - h // 2, 0, height - h)))
    return (int(rng.integers(0, width - w)), int(rng.integers(0, height - h)))


def coverage(token: PlantedToken, redacted: np.ndarray) -> float:
    """The fraction of ``token``'s box that the boolean ``redacted`` mask covers."""
    box = token.box_mask(redacted.shape)
    return float(redacted[box].mean()) if box.any() else 1.0
