"""When the cyclic garbage collector may pause the `mgn-cutover` program.

A wave's objects (the plan, the ledger, MGN's answers, the report's rows) live until the end of
the run and are freed by reference counting: a 4,000-server run makes almost no cyclic garbage
(its collections found ~200 objects in all). Yet each collection of the young generation walks
every container kept since the last one, with the event loop stopped: 13-50 ms per 50,000 here.
So the program:

- collects less often: thresholds 50,000/20/20 (at the default 700/10/10 the collector walked
  a 4,000-server run's objects again and again, ~0.5 s of CPU, up to 0.14 s at a time);
- freezes what the run set up (the plan, its ledger, the clients) once it starts: no collection
  walks them again, and the young generation starts empty;
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


def run_set_up() -> None:
    """The run is set up: freeze what is tracked so far (never collected or walked again)."""
    if _program:
        gc.freeze()


def sends_done() -> None:
    """Every FinalizeCutover is answered: collect the young generation now, while the run
    only waits for MGN."""
    if _program:
        gc.collect(0)
