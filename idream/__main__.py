import sys

from idream.cli import main

sys.exit(main())
