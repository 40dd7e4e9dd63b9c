"""Argument types for the CLI: a bad value becomes argparse's one-line error."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _number(convert: Callable[[str], float], noun: str, text: str) -> float:
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None


def positive_int(text: str) -> int:
    value = int(_number(int, "an integer", text))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def positive_float(text: str) -> float:
    value = _number(float, "a number", text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be greater than 0")
    return value


def non_negative(text: str) -> float:
    value = _number(float, "a number", text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must not be negative")
    return value


def share(text: str) -> float:
    value = _number(float, "a number between 0 and 1", text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def port_number(text: str) -> int:
    value = int(_number(int, "a port number", text))
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1-65535)")
    return value
