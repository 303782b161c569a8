"""CAM overlay pictures: captions readable at 100% zoom and never cut at the picture's edge."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxrtool.cam.overlay import MIN_TEXT_PX, save_overlay, wrap

LONG = "00000001_000.png · gradcam++ · seen in training (--allow-seen) · a note long enough to wrap twice over"


def test_a_long_caption_is_wrapped_within_the_width_and_keeps_every_word():
    font = ImageFont.load_default(size=MIN_TEXT_PX)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = wrap(LONG, font, 248, draw)
    assert len(lines) >= 2
    assert all(draw.textlength(line, font=font) <= 248 for line in lines)
    assert " ".join(" · ".join(lines).split()) == " ".join(LONG.split())


def test_an_overlay_grows_to_hold_its_wrapped_caption(tmp_path):
    image = np.full((64, 64), 120, dtype=np.uint8)
    cam = np.outer(np.linspace(0, 1, 64), np.ones(64))
    short = Image.open(save_overlay(tmp_path / "a.png", image, cam, "Mass: p = 0.91", "x.png · cam"))
    long = Image.open(save_overlay(tmp_path / "b.png", image, cam, "Mass: p = 0.91", LONG))
    assert short.width == long.width >= 256  # small images are enlarged so that text stays readable
    assert long.height > short.height
