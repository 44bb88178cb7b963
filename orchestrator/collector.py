"""When the cyclic garbage collector may pause the `mgn-cutover` program.

A wave's objects (the plan, the ledger, MGN's answers, the report's rows) live until the end of
the run and are freed by reference counting: a 4,000-server run makes almost no cyclic garbage
(its collections found ~200 objects in all). Yet each collection of the young generation walks
every container kept since the last one, with the event loop stopped: 13-50 ms per 50,000 here.
So the program:

- collects less often: thresholds 50,000/20/20 (at the default 700/10/10 the collector walked
  a 4,000-server run's objects again and again, ~0.5 s of CPU, up to 0.14 s at a time);
- does not collect while a run sets up (its plan, ledger and clients) and its pre-flight reads
  every server's state (the first sends go out meanwhile), objects that then live all night:
  no collection pauses the first sends; once the pre-flight is done they are frozen, never
  walked again;
- collects the young generation once the last FinalizeCutover is answered, while MGN has yet to
  show the last servers converged: the pause falls in that wait, not in the wave's last polls,
  its record or its report.

Only the program does this (`for_the_program`): a caller of `cli.main(argv)` in its own process
(the tests) keeps its collector as it is.
"""

from __future__ import annotations

import gc

_program = False


def for_the_program() -> None:
    """This process is the `mgn-cutover` program: its collector follows this module."""
    global _program
    _program = True
    gc.set_threshold(50_000, 20, 20)


def run_starting() -> None:
    """A run sets up: no collection until its pre-flight is done (`preflight_done`)."""
    if _program:
        gc.disable()


def preflight_done() -> None:
    """The run's pre-flight is done (or stopped): freeze what is tracked so far (never walked
    again) and collect as usual from here."""
    if _program:
        gc.freeze()
        gc.enable()


def sends_done() -> None:
    """Every FinalizeCutover is answered: collect the young generation now, while the run
    only waits for MGN."""
    if _program:
        gc.collect(0)
