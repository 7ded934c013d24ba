"""`python -m esremote.lab.node --home HOME [-d] [-p PIDFILE]`: what `bin/elasticsearch` runs."""

import sys

from esremote.lab.node.process import run

sys.exit(run())
