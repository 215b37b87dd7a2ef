"""Amounts of money as hosts say them, for comparing a reference price with today's."""

import pytest

from pipeline.classify.amounts import amounts, price_ratio, spoken_number


@pytest.mark.parametrize(
    "word, value",
    [
        ("一百九十九", 199),
        ("一千二", 1200),  # the unit below the last is implied
        ("一百五", 150),
        ("三千零五", 3005),
        ("一百零二", 102),
        ("十五", 15),
        ("两千四", 2400),
        ("一万二", 12000),
        ("二十万", 200000),
        ("一九九", 199),  # digit by digit
        ("129", 129),
        ("2.5万", 25000),
    ],
)
def test_spoken_numbers(word, value):
    assert spoken_number(word) == value


def test_amounts_skip_single_counting_words():
    assert [v for _, _, v in amounts("两件到手一百五,送一包纸")] == [150]


def test_price_ratio_compares_the_first_two_amounts_after_the_reference():
    text = "原价一百九十九,今天直播间只要六十九,还送两包纸"
    assert price_ratio(text, 2) == pytest.approx(69 / 199)
    assert price_ratio("原价是编的", 2) is None
