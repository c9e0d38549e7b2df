"""Rendered text lines with known content, for OCR tests and the OCR benchmark: DejaVu Sans,
Serif and Mono from matplotlib's fonts, 14-48 px, dark on light and light on dark, rotated by
up to 10 degrees, saved as JPEG quality 50."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONTS = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")
LINES = (
    "Welcome to Harbour Street Market",
    "Open daily from 8:30 to 19:00",
    "Fresh bread, cheese and olives",
    "Call 0161 496 0832 for orders",
    "Invoice No. 2024-0117 paid in full",
    "Total due: 1,284.50 EUR",
    "Platform 4 for trains to Leeds",
    "The quick brown fox jumps over the lazy dog",
    "Please keep this door closed!",
    "Exit via the stairs on the left",
    "Meeting moved to Tuesday at 3 pm",
    "Room 212, second floor, east wing",
    "Order #48213 shipped on 12 May",
    "Parking for customers only",
    "No smoking within 10 metres",
    "Batteries are not included",
    "Best before 03/2027, keep cool",
    "Speed limit 30 km/h in town",
    "Library hours: Mon-Fri 9 to 5",
    "Visitors must sign in at reception",
    "Wash hands before returning to work",
    "Flight BA 2490 departs at 14:25",
    "Serves four people as a main course",
    "Track your parcel online today",
    "Mind the gap between train and platform",
    "Ticket price includes a free drink",
    "Lost property is held for 30 days",
    "Press the green button to start",
    "Deliveries at the rear entrance",
    "Quiet zone: phones on silent please",
    "Children under 12 travel free",
    "Garden centre closes at six tonight",
    "Temperature 21.5 degrees, humidity 40%",
    "Return the key to the front desk",
    "Bus 42 via City Hall and Museum",
    "Printed in Bristol on recycled paper",
    "Annual report for the year 2025",
    "Hot drinks from the machine: 1.20",
    "Staff only beyond this point",
    "Thank you for shopping with us",
    "Recycle glass, paper and cans here",
    "Emergency exit: do not block",
)


@dataclass(frozen=True)
class RenderedPage:
    image: bytes  # JPEG
    lines: tuple[str, ...]  # top to bottom


def _font_path(name: str) -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


def render_pages(lines_per_page: int = 3, seed: int = 7) -> list[RenderedPage]:
    """Pages of ``lines_per_page`` lines each, covering every line of LINES once."""
    rng = random.Random(seed)
    pages = []
    for start in range(0, len(LINES), lines_per_page):
        texts = LINES[start : start + lines_per_page]
        font_name = FONTS[(start // lines_per_page) % len(FONTS)]
        size = rng.choice((14, 16, 18, 20, 24, 28, 32, 40, 48))
        font = ImageFont.truetype(str(_font_path(font_name)), size)
        dark_on_light = (start // lines_per_page) % 2 == 0
        ink, paper = (
            ((20, 20, 30), (245, 242, 235)) if dark_on_light else ((240, 240, 240), (25, 35, 60))
        )
        widths = [font.getbbox(text)[2] for text in texts]
        margin, spacing = size, int(size * 0.9)
        width = max(widths) + 2 * margin
        height = len(texts) * (size + spacing) + 2 * margin
        canvas = Image.new("RGB", (width, height), paper)
        draw = ImageDraw.Draw(canvas)
        for index, text in enumerate(texts):
            draw.text((margin, margin + index * (size + spacing)), text, font=font, fill=ink)
        angle = rng.uniform(-10, 10)
        canvas = canvas.rotate(
            angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=paper
        )
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=50)
        pages.append(RenderedPage(buffer.getvalue(), tuple(texts)))
    return pages


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def character_error_rate(found: list[str], expected: list[str]) -> float:
    """Edit distance over the pages' text (lines joined by newlines), spaces counted."""
    errors = sum(edit_distance(f, e) for f, e in zip(found, expected, strict=True))
    return errors / max(1, sum(len(e) for e in expected))
