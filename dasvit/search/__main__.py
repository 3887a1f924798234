import sys

from .searcher import main

sys.exit(main())
