"""``python -m rtc64``: the same as the ``rtc64`` command."""

import sys

from rtc64.cli import main

sys.exit(main())
