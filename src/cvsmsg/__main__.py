import sys

from cvsmsg.cli import main

sys.exit(main())
