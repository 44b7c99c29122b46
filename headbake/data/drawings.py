"""Benchmark-like figures drawn with PIL from a seed: charts, plots, geometry, tables, text, counting scenes.

The paper measured S_v on MathVista, MathVision, HallusionBench, MMStar and
SEED-Bench: charts with values, function plots, geometry figures with
labelled lengths and angles, tables, text in images and counting scenes,
asked as multiple choice with lettered options, yes/no, or for a number.
Each ``draw_*`` function makes one such image at the size it is given
(realistic sizes give a Qwen2.5-VL-7B processor several hundred image
tokens) and one question in one of those forms. No answers are kept: S_v
needs the question, not its answer.
"""

from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

COLORS = {
    "red": (214, 39, 40), "blue": (31, 119, 180), "green": (44, 160, 44), "orange": (255, 127, 14),
    "purple": (148, 103, 189), "brown": (140, 86, 75), "gray": (127, 127, 127), "yellow": (230, 200, 20),
}
INK = (20, 20, 20)
LETTERS = "ABCDE"


# ----------------------------------------------------------------------------- question forms


def multiple_choice(rng, question: str, correct, distractors) -> str:
    """A lettered-option question (MMStar / SEED-Bench / MathVista style)."""
    options = [correct] + [d for d in dict.fromkeys(distractors) if d != correct][:3]
    rng.shuffle(options)
    lines = [question, "Options:"] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    return "\n".join(lines + ["Answer with the option's letter from the given choices directly."])


def yes_no(question: str) -> str:
    """A HallusionBench-style yes/no question."""
    return f"{question} Please answer yes or no."


def number(question: str, kind: str = "an integer") -> str:
    """A MathVista-style free-form numeric question."""
    return f"{question} (Answer with {kind}.)"


# ----------------------------------------------------------------------------- drawing helpers


def _font(size: int):
    return ImageFont.load_default(size=max(10, int(size)))


def _canvas(size, background=(255, 255, 255)):
    img = Image.new("RGB", size, background)
    return img, ImageDraw.Draw(img)


def _fs(size, frac=0.032):
    """A font size in proportion to the image."""
    return max(12, int(min(size) * frac))


def _text_center(d, xy, text, font, fill=INK):
    d.text(xy, text, font=font, fill=fill, anchor="mm")


def _nice_step(span: float) -> float:
    raw = span / 5
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)


def _axes(d, box, y_max, font, y_min=0.0, label_fmt="{:g}"):
    """Left and bottom axes with y ticks and a light grid; returns a value -> y pixel map."""
    x0, y0, x1, y1 = box
    d.line([x0, y1, x1, y1], fill=INK, width=2)
    d.line([x0, y0, x0, y1], fill=INK, width=2)
    step = _nice_step(y_max - y_min)
    top = math.ceil(y_max / step) * step

    def ypix(v):
        return y1 - (v - y_min) / (top - y_min) * (y1 - y0)

    v = y_min
    while v <= top + 1e-9:
        y = ypix(v)
        d.line([x0, y, x1, y], fill=(225, 225, 225), width=1)
        d.line([x0 - 6, y, x0, y], fill=INK, width=2)
        d.text((x0 - 10, y), label_fmt.format(round(v, 6)), font=font, fill=INK, anchor="rm")
        v += step
    return ypix


# ----------------------------------------------------------------------------- charts

CATEGORY_POOLS = [
    ("Monthly sales (units)", "month", ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug"]),
    ("Fruit sold at the market (kg)", "fruit", ["Apple", "Banana", "Cherry", "Grape", "Lemon", "Mango", "Peach"]),
    ("Students per club", "club", ["Chess", "Drama", "Music", "Robotics", "Soccer", "Art", "Science"]),
    ("Rainfall by city (mm)", "city", ["Oslo", "Lima", "Cairo", "Delhi", "Perth", "Quito", "Seoul"]),
]


def draw_bar_chart(rng, size):
    img, d = _canvas(size)
    w, h = size
    title, noun, pool = rng.choice(CATEGORY_POOLS)
    cats = rng.sample(pool, rng.randint(4, min(7, len(pool))))
    vals = [rng.randint(3, 95) for _ in cats]
    font, small = _font(_fs(size)), _font(_fs(size, 0.026))
    _text_center(d, (w / 2, h * 0.06), title, _font(_fs(size, 0.042)))
    box = (w * 0.12, h * 0.14, w * 0.96, h * 0.86)
    ypix = _axes(d, box, max(vals), small)
    slot = (box[2] - box[0]) / len(cats)
    color = rng.choice(list(COLORS.values()))
    for i, (c, v) in enumerate(zip(cats, vals)):
        x = box[0] + slot * (i + 0.18)
        d.rectangle([x, ypix(v), x + slot * 0.64, box[3]], fill=color, outline=INK)
        d.text((x + slot * 0.32, ypix(v) - 6), str(v), font=small, fill=INK, anchor="mb")
        d.text((x + slot * 0.32, box[3] + 8), c, font=font, fill=INK, anchor="mt")
    a, b = rng.sample(cats, 2)
    best = cats[vals.index(max(vals))]
    q = rng.choice([
        lambda: multiple_choice(rng, f"Which {noun} has the highest value in the bar chart?", best,
                                [c for c in cats if c != best]),
        lambda: number(f"What is the difference between the values of {a} and {b}?"),
        lambda: yes_no(f"Is the bar for {a} taller than the bar for {b}?"),
        lambda: number("What is the sum of all the values shown in the chart?"),
    ])()
    return img, q


def draw_line_chart(rng, size):
    img, d = _canvas(size)
    w, h = size
    start = rng.randint(2010, 2018)
    years = list(range(start, start + rng.randint(5, 8)))
    series = {"Product A": [], "Product B": []} if rng.random() < 0.5 else {"Revenue": []}
    for name in series:
        v = rng.randint(10, 60)
        for _ in years:
            v = max(1, v + rng.randint(-15, 18))
            series[name].append(v)
    font, small = _font(_fs(size)), _font(_fs(size, 0.025))
    _text_center(d, (w / 2, h * 0.06), rng.choice(["Yearly revenue (million $)", "Visitors per year (thousands)"]),
                 _font(_fs(size, 0.042)))
    box = (w * 0.12, h * 0.14, w * 0.95, h * 0.84)
    ypix = _axes(d, box, max(max(s) for s in series.values()), small)
    step = (box[2] - box[0]) / (len(years) - 1 + 0.5)
    xs = [box[0] + step * (i + 0.25) for i in range(len(years))]
    for x, yr in zip(xs, years):
        d.text((x, box[3] + 8), str(yr), font=font, fill=INK, anchor="mt")
    colors = rng.sample(list(COLORS.items()), len(series))
    for (name, vals), (cname, col) in zip(series.items(), colors):
        pts = [(x, ypix(v)) for x, v in zip(xs, vals)]
        d.line(pts, fill=col, width=max(2, int(min(size) / 200)))
        for (x, y), v in zip(pts, vals):
            r = max(3, int(min(size) / 120))
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
            d.text((x, y - r - 3), str(v), font=small, fill=col, anchor="mb")
    if len(series) > 1:
        for i, ((name, _), (_, col)) in enumerate(zip(series.items(), colors)):
            y = h * 0.93
            x = w * (0.3 + 0.3 * i)
            d.rectangle([x - 40, y - 6, x - 16, y + 6], fill=col)
            d.text((x - 8, y), name, font=small, fill=INK, anchor="lm")
    name = rng.choice(list(series))
    vals = series[name]
    y1, y2 = sorted(rng.sample(years, 2))
    low = years[vals.index(min(vals))]
    q = rng.choice([
        lambda: multiple_choice(rng, f"In which year is {name} lowest?", str(low),
                                [str(y) for y in years if y != low]),
        lambda: number(f"What is the value of {name} in {y2}?"),
        lambda: yes_no(f"Is {name} higher in {y2} than in {y1}?"),
        lambda: number(f"By how much did {name} change from {y1} to {y2}?"),
    ])()
    return img, q


def draw_pie_chart(rng, size):
    img, d = _canvas(size)
    w, h = size
    names = rng.sample(["Rent", "Food", "Transport", "Savings", "Leisure", "Health", "Energy"], rng.randint(3, 6))
    cuts = sorted(rng.sample(range(5, 96), len(names) - 1))
    shares = [b - a for a, b in zip([0] + cuts, cuts + [100])]
    font = _font(_fs(size, 0.03))
    _text_center(d, (w / 2, h * 0.06), "Monthly budget", _font(_fs(size, 0.042)))
    r = min(w * 0.3, h * 0.38)
    cx, cy = w * 0.36, h * 0.54
    start = rng.uniform(0, 360)
    colors = rng.sample(list(COLORS.values()), len(names))
    for name, s, col in zip(names, shares, colors):
        end = start + s * 3.6
        d.pieslice([cx - r, cy - r, cx + r, cy + r], start, end, fill=col, outline=(255, 255, 255), width=2)
        mid = math.radians((start + end) / 2)
        d.text((cx + r * 0.65 * math.cos(mid), cy + r * 0.65 * math.sin(mid)), f"{s}%", font=font,
               fill=(255, 255, 255), anchor="mm")
        start = end
    for i, (name, col) in enumerate(zip(names, colors)):
        y = h * 0.25 + i * _fs(size, 0.06)
        d.rectangle([w * 0.72, y - 8, w * 0.72 + 18, y + 8], fill=col)
        d.text((w * 0.72 + 26, y), name, font=font, fill=INK, anchor="lm")
    a, b = rng.sample(names, 2)
    big = names[shares.index(max(shares))]
    q = rng.choice([
        lambda: number(f"What percentage of the budget goes to {a}?"),
        lambda: multiple_choice(rng, "Which category takes the largest share of the budget?", big,
                                [n for n in names if n != big]),
        lambda: yes_no(f"Does {a} take a larger share of the budget than {b}?"),
    ])()
    return img, q


# ----------------------------------------------------------------------------- function plots


def _function(rng):
    kind = rng.choice(["linear", "quadratic", "sine", "exponential"])
    if kind == "linear":
        a, b = rng.choice([-3, -2, -1, 1, 2, 3]), rng.randint(-4, 4)
        return (lambda x: a * x + b), f"y = {a}x {'+' if b >= 0 else '-'} {abs(b)}", [
            f"y = {-a}x {'+' if b >= 0 else '-'} {abs(b)}", f"y = {a}x {'-' if b >= 0 else '+'} {abs(b)}",
            f"y = {a + 1}x {'+' if b >= 0 else '-'} {abs(b)}"]
    if kind == "quadratic":
        a, hh, k = rng.choice([-1, 1]) * rng.choice([0.5, 1, 2]), rng.randint(-2, 2), rng.randint(-3, 3)
        f = (lambda x: a * (x - hh) ** 2 + k)
        return f, f"y = {a:g}(x - {hh})^2 + {k}", [
            f"y = {-a:g}(x - {hh})^2 + {k}", f"y = {a:g}(x + {hh})^2 + {k}", f"y = {a:g}(x - {hh})^2 - {k + 1}"]
    if kind == "sine":
        amp, per = rng.choice([1, 2, 3]), rng.choice([1, 2])
        return (lambda x: amp * math.sin(x / per)), f"y = {amp} sin(x/{per})", [
            f"y = {amp} cos(x/{per})", f"y = {amp + 1} sin(x/{per})", f"y = -{amp} sin(x/{per})"]
    base = rng.choice([2, 3])
    return (lambda x: base ** (x / 2)), f"y = {base}^(x/2)", [
        f"y = {base}^(-x/2)", f"y = {base + 1}^(x/2)", f"y = log_{base}(x)"]


def draw_function_plot(rng, size):
    img, d = _canvas(size)
    w, h = size
    f, label, wrong = _function(rng)
    xr = 5
    ys = [f(-xr + i * 2 * xr / 200) for i in range(201)]
    ymax = min(max(4, math.ceil(max(abs(min(ys)), abs(max(ys))))), 20)
    gstep = max(1, int(_nice_step(ymax)))  # 1, 2 or 5 units between grid lines
    ymax = math.ceil(ymax / gstep) * gstep
    small = _font(_fs(size, 0.025))
    m = 0.08

    def px(x, y):
        return (w * m + (x + xr) / (2 * xr) * w * (1 - 2 * m), h * m + (ymax - y) / (2 * ymax) * h * (1 - 2 * m))

    for gx in range(-xr, xr + 1):
        d.line([px(gx, -ymax), px(gx, ymax)], fill=(230, 230, 230))
    for gy in range(-ymax, ymax + 1, gstep):
        d.line([px(-xr, gy), px(xr, gy)], fill=(230, 230, 230))
    d.line([px(-xr, 0), px(xr, 0)], fill=INK, width=2)
    d.line([px(0, -ymax), px(0, ymax)], fill=INK, width=2)
    for gx in range(-xr, xr + 1):
        if gx:
            d.text((px(gx, 0)[0], px(gx, 0)[1] + 6), str(gx), font=small, fill=INK, anchor="mt")
    for gy in range(-ymax, ymax + 1, gstep):
        if gy:
            d.text((px(0, gy)[0] - 6, px(0, gy)[1]), str(gy), font=small, fill=INK, anchor="rm")
    pts = [px(-xr + i * 2 * xr / 200, y) for i, y in enumerate(ys) if abs(y) <= ymax]
    col = rng.choice(list(COLORS.values()))
    d.line(pts, fill=col, width=max(2, int(min(size) / 180)))
    d.text((w * 0.12, h * 0.04), "f(x)", font=_font(_fs(size, 0.04)), fill=col)
    a, b = sorted(rng.sample(range(-3, 4), 2))
    q = rng.choice([
        lambda: multiple_choice(rng, "Which equation matches the graph of f?", label, wrong),
        lambda: number("What is the value of f(0) shown in the graph?", "a number rounded to one decimal place"),
        lambda: yes_no(f"Is f increasing on the interval [{a}, {b}]?"),
        lambda: number(f"How many times does the graph of f cross the x-axis between x = -{xr} and x = {xr}?"),
    ])()
    return img, q


# ----------------------------------------------------------------------------- geometry


def _label(d, p, q, text, font, off=14):
    """Write ``text`` beside the middle of segment pq, pushed outward."""
    mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
    dx, dy = q[1] - p[1], p[0] - q[0]
    n = math.hypot(dx, dy) or 1
    d.text((mx + dx / n * off, my + dy / n * off), text, font=font, fill=(30, 30, 160), anchor="mm")


def draw_geometry(rng, size):
    img, d = _canvas(size)
    w, h = size
    font = _font(_fs(size, 0.036))
    kind = rng.choice(["right_triangle", "angles", "circle", "rectangle"])
    s = min(w, h) * 0.7
    cx, cy = w / 2, h / 2
    if kind == "right_triangle":
        a, b = rng.choice([(3, 4), (6, 8), (5, 12), (9, 12), (8, 15)])
        k = s / max(a, b)
        C = (cx - b * k / 2, cy + a * k / 2)
        A = (C[0], C[1] - a * k)
        B = (C[0] + b * k, C[1])
        d.polygon([A, B, C], outline=INK, width=3)
        m = s * 0.05
        d.line([(C[0] + m, C[1]), (C[0] + m, C[1] - m), (C[0], C[1] - m)], fill=INK, width=2)
        for name, p, o in (("A", A, (-18, -10)), ("B", B, (16, 10)), ("C", C, (-18, 12))):
            d.text((p[0] + o[0], p[1] + o[1]), name, font=font, fill=INK, anchor="mm")
        _label(d, A, C, str(a), font, -22)
        _label(d, C, B, str(b), font, -22)
        c = math.hypot(a, b)
        q = rng.choice([
            lambda: number(f"In the right triangle ABC, AC = {a} and BC = {b}. What is the length of AB?"),
            lambda: multiple_choice(rng, "What is the area of triangle ABC?", str(a * b // 2 if a * b % 2 == 0 else a * b / 2),
                                    [str(a * b), str(a + b), str(int(c) * 2)]),
            lambda: yes_no("Is angle C a right angle?"),
        ])()
    elif kind == "angles":
        x, y = rng.randint(35, 80), rng.randint(35, 80)
        pts = [(cx - s / 2, cy + s / 3), (cx + s / 2, cy + s / 3)]
        ax, ay = math.radians(x), math.radians(y)
        base = s
        t = base * math.sin(ay) / math.sin(ax + ay)
        apex = (pts[0][0] + t * math.cos(ax), pts[0][1] - t * math.sin(ax))
        d.polygon([pts[0], pts[1], apex], outline=INK, width=3)
        for name, p, o in (("A", pts[0], (-16, 12)), ("B", pts[1], (16, 12)), ("C", apex, (0, -20))):
            d.text((p[0] + o[0], p[1] + o[1]), name, font=font, fill=INK, anchor="mm")
        d.text((pts[0][0] + 50, pts[0][1] - 18), f"{x}°", font=font, fill=(160, 30, 30), anchor="mm")
        d.text((pts[1][0] - 50, pts[1][1] - 18), f"{y}°", font=font, fill=(160, 30, 30), anchor="mm")
        z = 180 - x - y
        q = rng.choice([
            lambda: multiple_choice(rng, "What is the measure of angle C?", f"{z}°",
                                    [f"{z + 10}°", f"{z - 10}°", f"{180 - x}°"]),
            lambda: number("What is the measure of angle C in degrees?"),
            lambda: yes_no("Is angle A larger than angle B?"),
        ])()
    elif kind == "circle":
        r = rng.randint(3, 12)
        rad = s / 2
        d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], outline=INK, width=3)
        ang = rng.uniform(0, 2 * math.pi)
        P = (cx + rad * math.cos(ang), cy + rad * math.sin(ang))
        d.line([(cx, cy), P], fill=INK, width=2)
        d.ellipse([cx - 4, cy - 4, cx + 4, cy + 4], fill=INK)
        d.text((cx - 14, cy - 14), "O", font=font, fill=INK, anchor="mm")
        _label(d, (cx, cy), P, f"r = {r}", font)
        q = rng.choice([
            lambda: number(f"The radius of circle O is {r}. What is its circumference? Use π = 3.14.",
                           "a number rounded to two decimal places"),
            lambda: multiple_choice(rng, "What is the diameter of circle O?", str(2 * r), [str(r), str(4 * r), str(r * r)]),
            lambda: yes_no("Is point O the center of the circle?"),
        ])()
    else:
        a, b = rng.randint(3, 12), rng.randint(3, 12)
        k = s / max(a, b)
        x0, y0 = cx - b * k / 2, cy - a * k / 2
        pts = [(x0, y0), (x0 + b * k, y0), (x0 + b * k, y0 + a * k), (x0, y0 + a * k)]
        d.polygon(pts, outline=INK, width=3)
        d.line([pts[0], pts[2]], fill=(120, 120, 120), width=2)
        for name, p, o in zip("ABCD", pts, ((-16, -14), (16, -14), (16, 14), (-16, 14))):
            d.text((p[0] + o[0], p[1] + o[1]), name, font=font, fill=INK, anchor="mm")
        _label(d, pts[0], pts[1], f"{b} cm", font, 18)
        _label(d, pts[1], pts[2], f"{a} cm", font, 26)
        q = rng.choice([
            lambda: number("What is the area of rectangle ABCD in square centimetres?"),
            lambda: number("What is the length of the diagonal AC?", "a number rounded to one decimal place"),
            lambda: multiple_choice(rng, "What is the perimeter of rectangle ABCD?", f"{2 * (a + b)} cm",
                                    [f"{a * b} cm", f"{a + b} cm", f"{2 * (a + b) + 2} cm"]),
        ])()
    return img, q


# ----------------------------------------------------------------------------- tables and text


def draw_table(rng, size):
    img, d = _canvas(size)
    w, h = size
    header, rows_pool, cols = rng.choice([
        ("Team", ["Lions", "Tigers", "Bears", "Wolves", "Eagles", "Sharks", "Hawks"], ["Won", "Lost", "Points"]),
        ("Store", ["North", "South", "East", "West", "Central", "Harbor"], ["Q1", "Q2", "Q3", "Q4"]),
        ("Student", ["Ana", "Ben", "Chen", "Dara", "Eli", "Femi", "Gus"], ["Math", "Science", "History"]),
    ])
    rows = rng.sample(rows_pool, rng.randint(4, min(7, len(rows_pool))))
    cells = [[rng.randint(1, 99) for _ in cols] for _ in rows]
    font = _font(_fs(size, 0.034))
    bold = _font(_fs(size, 0.038))
    n_c, n_r = len(cols) + 1, len(rows) + 1
    x0, y0, x1, y1 = w * 0.06, h * 0.1, w * 0.94, h * 0.92
    cw, rh = (x1 - x0) / n_c, (y1 - y0) / n_r
    d.rectangle([x0, y0, x1, y0 + rh], fill=(225, 232, 245))
    for i in range(n_r + 1):
        d.line([x0, y0 + i * rh, x1, y0 + i * rh], fill=INK, width=2 if i in (0, 1, n_r) else 1)
    for j in range(n_c + 1):
        d.line([x0 + j * cw, y0, x0 + j * cw, y1], fill=INK, width=1)
    for j, name in enumerate([header] + cols):
        _text_center(d, (x0 + (j + 0.5) * cw, y0 + rh / 2), name, bold)
    for i, (r, vals) in enumerate(zip(rows, cells), 1):
        _text_center(d, (x0 + 0.5 * cw, y0 + (i + 0.5) * rh), r, font)
        for j, v in enumerate(vals, 1):
            _text_center(d, (x0 + (j + 0.5) * cw, y0 + (i + 0.5) * rh), str(v), font)
    col = rng.randrange(len(cols))
    a, b = rng.sample(range(len(rows)), 2)
    best = rows[max(range(len(rows)), key=lambda i: cells[i][col])]
    q = rng.choice([
        lambda: number(f"What is the total of the column {cols[col]}?"),
        lambda: multiple_choice(rng, f"Which {header.lower()} has the highest value in the column {cols[col]}?",
                                best, [r for r in rows if r != best]),
        lambda: yes_no(f"Is the {cols[col]} value of {rows[a]} greater than that of {rows[b]}?"),
        lambda: number(f"What is the {cols[col]} value of {rows[a]}?"),
    ])()
    return img, q


def draw_text_scene(rng, size):
    w, h = size
    kind = rng.choice(["receipt", "sign", "notice"])
    if kind == "receipt":
        img, d = _canvas(size, (252, 250, 240))
        font = _font(_fs(size, 0.036))
        items = rng.sample(["Coffee", "Bagel", "Milk", "Bread", "Eggs", "Apples", "Tea", "Juice", "Rice"],
                           rng.randint(3, 6))
        prices = [rng.randint(100, 1500) / 100 for _ in items]
        y = h * 0.08
        _text_center(d, (w / 2, y), rng.choice(["CORNER MARKET", "CITY BAKERY", "GREEN GROCER"]),
                     _font(_fs(size, 0.05)))
        y += _fs(size, 0.09)
        for it, p in zip(items, prices):
            d.text((w * 0.15, y), it, font=font, fill=INK, anchor="lm")
            d.text((w * 0.85, y), f"${p:.2f}", font=font, fill=INK, anchor="rm")
            y += _fs(size, 0.065)
        d.line([w * 0.15, y, w * 0.85, y], fill=INK, width=2)
        y += _fs(size, 0.05)
        d.text((w * 0.15, y), "TOTAL", font=font, fill=INK, anchor="lm")
        d.text((w * 0.85, y), f"${sum(prices):.2f}", font=font, fill=INK, anchor="rm")
        it = rng.choice(items)
        q = rng.choice([
            lambda: number("What is the total amount on the receipt?", "a number with two decimal places"),
            lambda: number(f"How much does the {it} cost?", "a number with two decimal places"),
            lambda: yes_no(f"Is {it} listed on the receipt?"),
            lambda: multiple_choice(rng, "How many items are on the receipt?", str(len(items)),
                                    [str(len(items) + k) for k in (-1, 1, 2)]),
        ])()
        return img, q
    bg = rng.choice([(30, 90, 160), (20, 120, 60), (250, 250, 250), (200, 40, 40)])
    img, d = _canvas(size, bg)
    fg = (255, 255, 255) if sum(bg) < 500 else INK
    words = rng.sample(["EXIT", "OPEN", "SALE", "PARKING", "STOP", "LIBRARY", "STATION", "CAFE", "MUSEUM"], 3)
    big = words[0]
    d.rectangle([w * 0.05, h * 0.05, w * 0.95, h * 0.95], outline=fg, width=max(3, int(min(size) / 100)))
    _text_center(d, (w / 2, h * 0.35), big, _font(_fs(size, 0.16)), fg)
    hours = f"{rng.randint(6, 10)}:00 - {rng.randint(17, 23)}:00"
    _text_center(d, (w / 2, h * 0.62), f"Open daily {hours}", _font(_fs(size, 0.05)), fg)
    _text_center(d, (w / 2, h * 0.75), f"Floor {rng.randint(1, 9)} · {words[1].title()} and {words[2].title()}",
                 _font(_fs(size, 0.04)), fg)
    q = rng.choice([
        lambda: multiple_choice(rng, "What word is written in the largest letters?", big, words[1:] + ["CLOSED"]),
        lambda: yes_no(f"Does the sign say {words[1]} in the largest letters?"),
        lambda: number("At what hour does the place open in the morning?"),
        lambda: number("On which floor is it?"),
    ])()
    return img, q


# ----------------------------------------------------------------------------- counting


def _shape(d, kind, x, y, r, col):
    if kind == "circle":
        d.ellipse([x - r, y - r, x + r, y + r], fill=col, outline=INK)
    elif kind == "square":
        d.rectangle([x - r, y - r, x + r, y + r], fill=col, outline=INK)
    elif kind == "triangle":
        d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=col, outline=INK)
    else:  # star
        pts = []
        for i in range(10):
            rr = r if i % 2 == 0 else r * 0.45
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((x + rr * math.cos(a), y + rr * math.sin(a)))
        d.polygon(pts, fill=col, outline=INK)


def draw_counting(rng, size):
    img, d = _canvas(size, rng.choice([(245, 245, 240), (225, 235, 225), (235, 230, 245)]))
    w, h = size
    shapes = ["circle", "square", "triangle", "star"]
    colors = rng.sample(list(COLORS), 3)
    placed, objects = [], []
    r = max(12, int(min(size) * rng.uniform(0.035, 0.06)))
    target = rng.randint(6, 18)
    tries = 0
    while len(objects) < target and tries < 2000:
        tries += 1
        x, y = rng.uniform(r * 1.5, w - r * 1.5), rng.uniform(r * 1.5, h - r * 1.5)
        if any(math.hypot(x - px, y - py) < 2.3 * r for px, py in placed):
            continue
        kind, col = rng.choice(shapes), rng.choice(colors)
        _shape(d, kind, x, y, r, COLORS[col])
        placed.append((x, y))
        objects.append((kind, col))
    kind, col = rng.choice(objects)
    n_kc = sum(1 for o in objects if o == (kind, col))
    c2 = rng.choice([c for c in colors if c != col])
    n_k = sum(1 for o in objects if o[0] == kind)
    q = rng.choice([
        lambda: number(f"How many {col} {kind}s are there in the image?"),
        lambda: yes_no(f"Are there more {col} objects than {c2} objects?"),
        lambda: multiple_choice(rng, f"How many {kind}s are there in the image?", str(n_k),
                                [str(n_k + k) for k in (-1, 1, 2) if n_k + k >= 0] + [str(n_k + 3)]),
        lambda: yes_no(f"Is there exactly {n_kc + rng.choice([0, 1])} {col} {kind} in the image?"
                       if n_kc == 1 else f"Are there {n_kc + rng.choice([0, 1])} {col} {kind}s in the image?"),
        lambda: number("How many objects are there in the image in total?"),
    ])()
    return img, q


DRAWINGS = {
    "bar_chart": draw_bar_chart,
    "line_chart": draw_line_chart,
    "pie_chart": draw_pie_chart,
    "function_plot": draw_function_plot,
    "geometry": draw_geometry,
    "table": draw_table,
    "text": draw_text_scene,
    "counting": draw_counting,
}
