"""One text form for every recogniser and template: edge.textnorm."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.textnorm import parse_number, say_number, spoken_form


@pytest.mark.parametrize(
    "written, spoken",
    [
        # Whisper: casing, punctuation, digits, units, symbols, times
        ("Set a 12-oz. Iced Coffee, please.", "set a twelve ounce iced coffee please"),
        ("Set Bed Light brightness to 50%.", "set bed light brightness to fifty percent"),
        ("Wake me at 7:30 a.m.", "wake me at seven thirty am"),
        ("Set a timer for 3 hours and 10 minutes.", "set a timer for three hours and ten minutes"),
        ("What's the temperature of the EcoBee?", "what's the temperature of the ecobee"),
        ("Turn on TV #2", "turn on tv number two"),
        ("Set it to 60.5 degrees", "set it to sixty point five degrees"),
        ("the 21st of May", "the twenty first of may"),
        ("avada-kedavra", "avada kedavra"),
        ("I’d like a café au lait", "i'd like a cafe au lait"),
        ("1,000 people", "one thousand people"),
        ("10:05pm & 25% off", "ten oh five pm and twenty five percent off"),
        ("turn on tv2", "turn on tv two"),
        # PocketSphinx and Vosk already write spoken form: unchanged
        ("turn off the lights in the kitchen", "turn off the lights in the kitchen"),
        ("what's the weather like", "what's the weather like"),
        ("", ""),
        ("?!", ""),
    ],
)
def test_spoken_form(written, spoken):
    assert spoken_form(written) == spoken


def test_spoken_form_is_idempotent_on_its_own_output():
    for text in ("Set a 12-oz. Iced Coffee", "Wake me at 7:30 a.m.", "What's 2+2?"):
        once = spoken_form(text)
        assert spoken_form(once) == once


@pytest.mark.parametrize(
    "words, number",
    [
        ("twenty five", 25),
        ("sixty point five", 60.5),
        ("one hundred five", 105),
        ("one hundred and five", 105),
        ("a hundred", 100),
        ("two thousand twenty four", 2024),
        ("first", 1),
        ("twenty first", 21),
        ("zero", 0),
        ("50", 50),
        ("zero point two five", 0.25),
    ],
)
def test_parse_number(words, number):
    assert parse_number(words) == number


@pytest.mark.parametrize("words", ["kitchen", "five six", "", "point", "a", "twenty twenty"])
def test_parse_number_refuses_what_is_not_one_number(words):
    assert parse_number(words) is None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**9))
def test_say_then_parse_whole_numbers(n):
    assert parse_number(say_number(n)) == n


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**5), st.integers(min_value=1, max_value=99))
def test_say_then_parse_decimals(whole, tenths):
    value = float(f"{whole}.{tenths}")
    assert parse_number(say_number(value)) == pytest.approx(value)
