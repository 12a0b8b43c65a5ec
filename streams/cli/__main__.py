"""`python -m leadflow.streams.cli`: the `leadflow` command."""

import sys

from leadflow.streams.cli.main import main

sys.exit(main())
