"""`python -m tests.soak --messages 100000`: the full-size soak (see harness.py)."""
import sys

from .harness import main

sys.exit(main())
