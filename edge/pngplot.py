"""A tiny scatter-plot renderer that writes PNG with the standard library only.

``edge-profile`` must draw its latency-vs-energy plot on a Pi that has only the runtime installed;
matplotlib (tens of MB, slow to import on a Pi Zero) would be a heavy dependency for one picture.
This module draws points, axes, ticks and labels into an RGB buffer and encodes it with ``zlib``.
The glyphs are the 6x11 bitmap font that Pillow embeds as its default font (ASCII 32-126), stored
here as hex so nothing is loaded at run time.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

GLYPH_W, GLYPH_H = 6, 11
_FONT_HEX = (
    "0000000000000000000000618618018000000005145000000000001453e514f945000021ecbc786dbc20000038abc21e"
    "a8e0000000073063eb3e0000000c210000000000000042186186081000001020c30c30840000008f1890000000000000"
    "208f882000000000000000000c21000000000f8000000000000000000018000000020841082104000001cdb6db6d9c00"
    "00000cf0c30c33f0000001cd86318dbe0000001cd86706d9c00000006396dbf1860000003ec3cd869bc0000001cdb0f3"
    "6d9c0000003ed8630c6180000001cdb6736d9c0000001cdb6786d9c00000000000600018000000000006000184200000"
    "0318c183000000000003c03c0000000000060c18c600000000007263180180000001cca6aaa9f070000000f1c53edb70"
    "0000000f36f36dbc000000007b6c30d9c00000000f36db6dbc00000000fb0f30dbe00000000fb0f30c3800000000736c"
    "3ed9e00000000df6fb6db700000000f1861863c0000000078c32cb3800000000db4e3cdbb00000000e30c30dbe000000"
    "008b6dbeaaa00000000dfaeb6db200000000736db6d9c00000000f36dbcc3800000000736db6d9c18000000f36dbcdbb"
    "000000007b2f0e9bc00000000f9a61863c00000000df6db6d9c00000000df651c70800000000aeaabe71400000000cde"
    "30c7b300000000cf378c31e00000000fb6318dbe0000001c618618618700000208104082041000001c30c30c30c70000"
    "0087360000000000000000000000003f000182040000000000000001cd9edbf00000030c3cdb6dbc0000000001cdb0d9"
    "c0000000e19edb6d9f0000000001cdbec1e0000000e63e61863e0000000001bdb6d9e1bc00030c3cdb6db60000000c03"
    "c30c33f0000000c03c30c30c33800030c36f38f370000003c30c30c33f0000000003cfaaaaa0000000002cdb6db60000"
    "000001cdb6d9c0000000003cdb6dbcc380000001bdb6d9e18f0000003775863c0000000001ee1e1fe0000001863e6186"
    "ce00000000036db6d9f00000000036d9c7080000000002babe7940000000003b78c7b700000000037db651c630000000"
    "3eb18dbe0000000630c60c30c1800000020820820820000030618318618c000000001ab00000000"
)
_FONT = {chr(32 + i): int(_FONT_HEX[i * 17 : (i + 1) * 17], 16) for i in range(95)}

Color = tuple[int, int, int]
PALETTE: tuple[Color, ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
)


class Canvas:
    def __init__(self, width: int, height: int, background: Color = (255, 255, 255)):
        self.width, self.height = width, height
        self.buf = bytearray(bytes(background) * (width * height))

    def point(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.buf[i : i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, dash: int = 0) -> None:
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, n = dx + dy, 0
        while True:
            if not dash or (n // dash) % 2 == 0:
                self.point(x0, y0, color)
            if x0 == x1 and y0 == y1:
                return
            n += 1
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for a, b, c_, d in ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0)):
            self.line(a, b, c_, d, color)

    def fill_rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(max(y0, 0), min(y1 + 1, self.height)):
            for x in range(max(x0, 0), min(x1 + 1, self.width)):
                self.point(x, y, color)

    def disc(self, cx: int, cy: int, r: int, color: Color) -> None:
        for y in range(-r, r + 1):
            for x in range(-r, r + 1):
                if x * x + y * y <= r * r + r:
                    self.point(cx + x, cy + y, color)

    def text(self, x: int, y: int, s: str, color: Color = (0, 0, 0), scale: int = 1) -> None:
        for ch in s:
            bits = _FONT.get(ch, _FONT["?"])
            for gy in range(GLYPH_H):
                for gx in range(GLYPH_W):
                    if bits >> ((GLYPH_H - 1 - gy) * GLYPH_W + (GLYPH_W - 1 - gx)) & 1:
                        for sy in range(scale):
                            for sx in range(scale):
                                self.point(x + gx * scale + sx, y + gy * scale + sy, color)
            x += GLYPH_W * scale

    @staticmethod
    def text_width(s: str, scale: int = 1) -> int:
        return len(s) * GLYPH_W * scale

    def vertical_text(self, x: int, y: int, s: str, color: Color = (0, 0, 0)) -> None:
        """Text reading bottom to top, starting at (x, y) and going up."""
        tmp = Canvas(self.text_width(s), GLYPH_H, (255, 255, 255))
        tmp.text(0, 0, s, (0, 0, 0))
        for ty in range(tmp.height):
            for tx in range(tmp.width):
                if tmp.buf[(ty * tmp.width + tx) * 3] == 0:
                    self.point(x + ty, y - tx, color)

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.buf[y * self.width * 3 : (y + 1) * self.width * 3]) for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
        )


def nice_ticks(hi: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least hi."""
    if not hi > 0 or math.isinf(hi):
        return [0.0, 1.0]
    raw = hi / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [round(i * step, 10) for i in range(int(math.ceil(hi / step - 1e-9)) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.1e}"


def scatter(
    points: Sequence[dict],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    width: int = 960,
    height: int = 600,
) -> Path:
    """Write a labelled scatter plot. Each point: ``x``, ``y``, ``label``, ``group`` (colour, legend)."""
    c = Canvas(width, height)
    left, right, top, bottom = 80, 30, 50, 60
    pw, ph = width - left - right, height - top - bottom
    xs = nice_ticks(max((p["x"] for p in points), default=1.0) * 1.08)
    ys = nice_ticks(max((p["y"] for p in points), default=1.0) * 1.08)
    xmax, ymax = xs[-1] or 1.0, ys[-1] or 1.0
    to_px = lambda x, y: (left + round(x / xmax * pw), top + ph - round(y / ymax * ph))  # noqa: E731
    grey, black = (220, 220, 220), (0, 0, 0)
    for t in xs:
        px, _ = to_px(t, 0)
        c.line(px, top, px, top + ph, grey, dash=3)
        label = _fmt(t)
        c.text(px - c.text_width(label) // 2, top + ph + 6, label)
    for t in ys:
        _, py = to_px(0, t)
        c.line(left, py, left + pw, py, grey, dash=3)
        label = _fmt(t)
        c.text(left - 6 - c.text_width(label), py - GLYPH_H // 2, label)
    c.line(left, top, left, top + ph, black)
    c.line(left, top + ph, left + pw, top + ph, black)
    c.text((width - c.text_width(title, 2)) // 2, 12, title, black, scale=2)
    c.text(left + (pw - c.text_width(xlabel)) // 2, height - 22, xlabel)
    c.vertical_text(14, top + (ph + c.text_width(ylabel)) // 2, ylabel)
    groups = list(dict.fromkeys(p.get("group", "") for p in points))
    colors = {g: PALETTE[i % len(PALETTE)] for i, g in enumerate(groups)}
    pixels = [(p, *to_px(p["x"], p["y"])) for p in sorted(points, key=lambda p: (p["x"], p["y"]))]
    # Obstacles: every marker, the legend's corner, then each label as it is placed.
    placed: list[tuple[int, int, int, int]] = [(px - 5, py - 5, px + 5, py + 5) for _, px, py in pixels]
    placed.append(
        (
            left,
            top,
            left + 40 + max((c.text_width(g) for g in groups), default=0),
            top + 16 + len(groups) * (GLYPH_H + 6),
        )
    )

    def free(x0: int, y0: int, x1: int, y1: int) -> bool:
        return (
            left < x0
            and x1 < width - 2
            and top < y0
            and y1 < top + ph
            and not any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in placed)
        )

    for p, px, py in pixels:
        c.disc(px, py, 4, colors[p.get("group", "")])
    for p, px, py in pixels:
        label = p.get("label", "")
        w = c.text_width(label)
        # Beside the point if there is room, else the nearest free row above or below, with a leader line.
        candidates = [(px + 8, py - GLYPH_H // 2), (px - 8 - w, py - GLYPH_H // 2)]
        for step in range(1, 12):
            for dy in (-step * (GLYPH_H + 2), step * (GLYPH_H + 2)):
                candidates += [(px + 8, py - GLYPH_H // 2 + dy), (px - 8 - w, py - GLYPH_H // 2 + dy)]
        lx, ly = next(((x, y) for x, y in candidates if free(x, y, x + w, y + GLYPH_H)), candidates[0])
        placed.append((lx, ly, lx + w, ly + GLYPH_H))
        if ly != py - GLYPH_H // 2:
            c.line(px, py, lx if lx > px else lx + w, ly + GLYPH_H // 2, (170, 170, 170))
        c.text(lx, ly, label, (60, 60, 60))
    # Legend in a box at the top left, the corner a latency-vs-energy cloud leaves empty.
    lx, ly = left + 12, top + 10
    box_w = 24 + max((c.text_width(g) for g in groups), default=0)
    box_h = 8 + len(groups) * (GLYPH_H + 6)
    c.fill_rect(lx - 6, ly - 6, lx - 6 + box_w, ly - 6 + box_h, (255, 255, 255))
    c.rect(lx - 6, ly - 6, lx - 6 + box_w, ly - 6 + box_h, (120, 120, 120))
    for i, g in enumerate(groups):
        y = ly + i * (GLYPH_H + 6)
        c.disc(lx + 2, y + GLYPH_H // 2, 4, colors[g])
        c.text(lx + 12, y, g)
    path = Path(path)
    path.write_bytes(c.png())
    return path


__all__ = ["Canvas", "nice_ticks", "scatter"]
