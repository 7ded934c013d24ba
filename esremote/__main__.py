import sys

from esremote.cli import main

sys.exit(main())
