"""Option values and help text: the types that parse one option's text (widths, lists of names,
a task spec) and the help helpers that show a default.

Standard library only: torch loads when a command runs, so `genexfer --help` works where only
the service is installed.
"""

from __future__ import annotations

import argparse

from contract.vocab import BASELINES, EVAL_METHODS, TASKS


def d(text: str) -> str:
    """Help text that shows the default."""
    return text + " (default: %(default)s)"


def show(widths: tuple[int, ...]) -> str:
    """Widths as the command line takes them."""
    return ",".join(str(w) for w in widths)


def widths(text: str) -> tuple[int, ...]:
    """'256,64' → (256, 64); '' → ()."""
    try:
        return tuple(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def positive_ints(text: str) -> tuple[int, ...]:
    """'5,10,25' → (5, 10, 25); refuses empty and non-positive lists."""
    values = widths(text)
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def baseline_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of known classification baselines."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown baselines {unknown}; have {list(BASELINES)}")
    return names


def method_names(text: str) -> tuple[str, ...]:
    """A comma-separated list of evaluation methods."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(set(names) - set(EVAL_METHODS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}; have {list(EVAL_METHODS)}")
    return names


def task_spec(text: str) -> tuple[str, str, float]:
    """'G2M_score:regression:0.5' → (column, kind, weight); the kind and weight may be left out
    (classification, 1), and a column may itself hold ':' (read from the right)."""
    column, kind, weight = text, "classification", 1.0
    head, _, last = column.rpartition(":")
    if head:
        try:
            weight = float(last)
            column = head
        except ValueError:
            pass
    head, _, last = column.rpartition(":")
    if head and last in TASKS:
        column, kind = head, last
    if not column.strip(":") or column[0] == ":" or not 0 < weight < float("inf"):
        raise argparse.ArgumentTypeError(
            f"expected COLUMN[:classification|regression[:WEIGHT>0]], got {text!r}"
        )
    return column, kind, weight
