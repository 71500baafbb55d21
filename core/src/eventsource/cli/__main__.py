"""``python -m eventsource.cli``: the same as the ``eventsource`` console script."""

import sys

from eventsource.cli.main import main

sys.exit(main())
