"""``python -m graphrec ...``: the same as the ``graphrec`` command."""
import sys

from graphrec.cli import main

sys.exit(main())
