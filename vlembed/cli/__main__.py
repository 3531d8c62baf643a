"""`python -m vlembed.cli ...` (also `torchrun -m vlembed.cli encode ...`)."""

import sys

from vlembed.cli import main

sys.exit(main())
