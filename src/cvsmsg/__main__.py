import sys

from cvsmsg.main import main

sys.exit(main())
