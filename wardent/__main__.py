import sys

from wardent.cli import main

sys.exit(main())
