import sys

from cvsmsg.entry import main

sys.exit(main())
