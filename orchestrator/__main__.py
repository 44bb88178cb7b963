"""`python -m orchestrator` is the same as the `mgn-cutover` command."""

import sys

from orchestrator.cli import main

sys.exit(main())
