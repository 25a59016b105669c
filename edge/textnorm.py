"""Text in one form for every engine and every template: what the intent model and grammar read.

Recognisers and people write the same words differently: Whisper gives "Set a 12-oz. Iced
Coffee, please." and "7:30 a.m.", PocketSphinx and Vosk give "set a twelve ounce iced coffee
please", a template file says "{size} iced coffee" and a typed command may say "50%". The
*spoken form* makes them one: lower case, numbers and symbols in words, no punctuation (an
apostrophe inside a word stays: "what's", as the recognisers' dictionaries write it), hyphens as
spaces. Training sentences (``tools/templates.py``) and the grammar
(``edge.grammar``) go through :func:`spoken_form` too, so both sides of every comparison agree.

Numbers are spelled with ``num2words`` (cardinals, ordinals, decimals); "and" inside a number is
dropped, because people and recognisers say "one hundred five" and "one hundred and five" alike.
:func:`parse_number` reads such words back for range slots ("sixty point five" -> 60.5).
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_WORD_VALUES = {w: i for i, w in enumerate(_ONES)} | {w: 10 * i for i, w in enumerate(_TENS) if i >= 2}
_WORD_VALUES |= {"oh": 0, "a": 1}
_ORDINAL_WORDS = {num2words(n, to="ordinal").split("-")[-1].split()[-1]: n for n in range(1, 20)}
_ORDINAL_WORDS |= {num2words(n, to="ordinal"): n for n in range(20, 100, 10)}

_UNITS = {
    "oz": "ounce",
    "lb": "pound",
    "lbs": "pounds",
    "kg": "kilograms",
    "g": "grams",
    "km": "kilometers",
    "mi": "miles",
    "ml": "milliliters",
    "l": "liters",
    "min": "minutes",
    "mins": "minutes",
    "sec": "seconds",
    "secs": "seconds",
    "hr": "hour",
    "hrs": "hours",
    "ft": "feet",
    "in": "inches",
    "mph": "miles per hour",
    "kph": "kilometers per hour",
}
"""Abbreviations written after a number ("12 oz", "5 min") and what is said for them."""
_SYMBOLS = {
    "%": " percent ",
    "&": " and ",
    "+": " plus ",
    "@": " at ",
    "#": " number ",
    "°": " degrees ",
    "=": " equals ",
    "×": " times ",
    "½": " and a half ",
    "¼": " and a quarter ",
}
_NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?)(st|nd|rd|th)?(?![\w])")
_TIME = re.compile(r"(?<![\d:])(\d{1,2}):(\d{2})(?![\d:])")
_CLOCK = re.compile(r"(?<![^\W\d])([ap])\.?\s?m\b\.?", re.IGNORECASE)
_CURRENCY = re.compile(r"([$€£])\s?(\d[\d,]*(?:\.\d+)?)")
_CURRENCY_NAMES = {"$": "dollars", "€": "euros", "£": "pounds"}
_UNIT_AFTER_NUMBER = re.compile(
    r"(\d)\s?-?(" + "|".join(sorted(_UNITS, key=len, reverse=True)) + r")\b\.?", re.IGNORECASE
)


def say_number(value: int | float | str, ordinal: bool = False) -> str:
    """A number as it is said: ``60.5`` -> "sixty point five", ``21`` ordinal -> "twenty first"."""
    if isinstance(value, str):
        value = float(value) if "." in value else int(value)
    if isinstance(value, float) and value.is_integer() and not ordinal:
        value = int(value)
    words = num2words(value, to="ordinal" if ordinal else "cardinal", lang="en")
    return " ".join(w for w in words.replace("-", " ").replace(",", " ").split() if w != "and")


def _say_time(match: re.Match[str]) -> str:
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes == 0:
        return f" {say_number(hours)} "
    tail = f"oh {say_number(minutes)}" if minutes < 10 else say_number(minutes)
    return f" {say_number(hours)} {tail} "


def _say_digits(match: re.Match[str]) -> str:
    digits, suffix = match.group(1).replace(",", ""), match.group(2)
    if len(digits.split(".")[0]) > 15:  # a serial number, not a quantity: say it digit by digit
        return " " + " ".join(_ONES[int(d)] if d.isdigit() else "point" for d in digits) + " "
    return f" {say_number(digits, ordinal=suffix is not None)} "


def spoken_form(text: str) -> str:
    """Lower-case words as they are said: numbers, times, units and symbols in words; no punctuation."""
    text = unicodedata.normalize("NFKC", text)
    text = _CURRENCY.sub(lambda m: f" {m.group(2)} {_CURRENCY_NAMES[m.group(1)]} ", text)
    text = _TIME.sub(_say_time, text)
    text = _CLOCK.sub(lambda m: f" {m.group(1).lower()}m ", text)
    text = _UNIT_AFTER_NUMBER.sub(lambda m: f"{m.group(1)} {_UNITS[m.group(2).lower()]} ", text)
    for symbol, words in _SYMBOLS.items():
        text = text.replace(symbol, words)
    text = _NUMBER.sub(_say_digits, text)
    text = re.sub(r"(\d)([^\W\d])|([^\W\d])(\d)", lambda m: " ".join(g for g in m.groups() if g), text)
    text = _NUMBER.sub(_say_digits, text)  # digits that were written against letters ("tv2")
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[’ʼ`]", "'", text)
    text = re.sub(r"[^\w']+|_", " ", text)
    # "what's" keeps its apostrophe (the recognisers' dictionaries spell it so); quotes around words go
    return " ".join(w.strip("'") for w in text.split() if w.strip("'"))


def written_form(text: str) -> str:
    """Lower case without sentence punctuation, digits kept: the form of models trained on typed text
    (HWU64), for transcripts from recognisers that punctuate and capitalise (Whisper)."""
    text = unicodedata.normalize("NFKC", text).replace("’", "'")
    text = _CLOCK.sub(lambda m: f" {m.group(1).lower()}m ", text)
    text = re.sub(r"[.,!?;:\"()\[\]]+(?=\s|$)|(?<=\s)[\"(\[]+|^[\"(\[]+", " ", text.lower())
    return " ".join(text.split())


def parse_number(words: str) -> float | None:
    """The number that spoken words say ("twenty five" -> 25, "sixty point five" -> 60.5), else None."""
    tokens = [t for t in spoken_form(words).split() if t != "and"]
    if not tokens or tokens == ["a"]:
        return None
    if all(t.isdigit() for t in tokens):
        return float("".join(tokens))
    if "point" in tokens:
        i = tokens.index("point")
        whole = parse_number(" ".join(tokens[:i])) if i else 0.0
        digits = [_WORD_VALUES.get(t) for t in tokens[i + 1 :]]
        if whole is None or not digits or any(d is None or d > 9 for d in digits):
            return None
        return whole + float("0." + "".join(str(d) for d in digits))
    if len(tokens) == 1 and tokens[0] in _ORDINAL_WORDS:
        return float(_ORDINAL_WORDS[tokens[0]])
    total, current, seen = 0, 0, False
    for t in tokens:
        if t in _WORD_VALUES:
            value = _WORD_VALUES[t]
            if seen and current % 10 == 0 and 0 < value < 10 and current % 100 != 0:
                current += value  # "twenty five"
            elif seen and current and value < 100 and current % 100 == 0:
                current += value  # "one hundred five"
            elif seen and current:
                return None  # "five six": two numbers
            else:
                current = value
            seen = True
        elif t in _SCALES and seen:
            scale = _SCALES[t]
            if scale == 100:
                current = (current or 1) * 100
            else:
                total += (current or 1) * scale
                current = 0
        elif t in _ORDINAL_WORDS and seen:
            current += _ORDINAL_WORDS[t]
        elif t.isdigit():
            if seen and current:
                return None
            current, seen = int(t), True
        else:
            return None
    return float(total + current) if seen else None


__all__ = ["parse_number", "say_number", "spoken_form", "written_form"]
