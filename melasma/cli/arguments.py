"""Typed argparse `type=` validators shared by every sub-command.

Each takes the flag's text and returns the value, or raises `argparse.ArgumentTypeError` with a
one-line reason; argparse then prints `error: argument --flag: <reason>` and exits with status 2.
Non-finite numbers (nan, inf) and numbers written as floats where an integer is meant (1e23) are
refused everywhere.
"""

from __future__ import annotations

import argparse
import math
import socket
from pathlib import Path

#: Largest seed numpy, torch and Python's random all accept.
MAX_SEED = 2**63 - 1  # TrainConfig's bound too; repeated here so parsing a flag imports no torch


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def seed(text: str) -> int:
    """A random seed: an integer from 0 to 2**63 - 1."""
    value = _integer(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"a seed must be from 0 to 2**63-1, got {value}")
    return value


def finite_float(text: str) -> float:
    """A finite float (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite float above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    value = _integer(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port must be from 1 to 65535, got {value}")
    return value


def existing_file(text: str) -> Path:
    """A path to a file that exists."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return path


def device(text: str) -> str:
    """auto, cpu, cuda, cuda:N or mps; a GPU that this machine lacks is refused here."""
    name = text.strip().lower()
    if name in ("auto", "cpu"):
        return name
    if not (name in ("cuda", "mps") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    # deferred: imports torch; only a cuda or mps device is checked with it
    from melasma.training.device import resolve_device

    try:
        resolve_device(name)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return name


def check_port_free(host: str, number: int) -> None:
    """Raise OSError naming the port when `host:number` cannot be bound (another server holds it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind((host, number))
        except OSError as error:
            raise OSError(f"cannot listen on {host}:{number}: {error.strerror or error}") from None
