"""`python -m dasvit.focus`: FocusFormer training (see dasvit.focus.train)."""

import sys

from .train import main

sys.exit(main())
