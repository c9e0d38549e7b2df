"""Argument types that several command groups share."""

from __future__ import annotations

import argparse


def days_arg(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of days") from None
    if not days >= 0:  # also NaN
        raise argparse.ArgumentTypeError("days must be >= 0")
    return days


def limit_arg(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("the limit must be >= 1")
    return number
