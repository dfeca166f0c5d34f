"""``python -m alignbook.cli``: the ``alignbook`` command."""

import sys

from alignbook.cli import main

sys.exit(main())
