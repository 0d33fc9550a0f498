"""CLI flags generated from the declared processing parameters (``vigil.config``), and back."""

from __future__ import annotations

import argparse


def add_processing_flags(parser: argparse.ArgumentParser, cls=None) -> None:
    """One ``--flag`` per declared processing parameter, from its declaration (type, default,
    choices, help); the bounds are checked by the parameters themselves."""
    from vigil.config import ProcessParams, declarations, describe

    for d in declarations(cls or ProcessParams):
        meta = d.meta
        limits = "" if meta["choices"] or meta["minimum"] is None else f" ({describe(meta)})"
        default = "" if meta["choices"] else f"; default {d.default}"
        parser.add_argument(f"--{d.name.replace('_', '-')}", dest=d.name, type=d.kind, default=d.default,
                            choices=meta["choices"], help=f"{meta['help']}{limits}{default}")  # fmt: skip


def params_from_args(args, cls=None):
    """The processing parameters of parsed CLI arguments."""
    from vigil.config import ProcessParams, declarations

    cls = cls or ProcessParams
    return cls(**{d.name: getattr(args, d.name) for d in declarations(cls)})
