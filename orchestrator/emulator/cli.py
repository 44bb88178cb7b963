"""`mgn-cutover simulate`: serve the emulator in the foreground for a rehearsal."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=0)


def main(ns: argparse.Namespace) -> int:
    return 2
