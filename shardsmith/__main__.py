import sys

from shardsmith.cli import main

sys.exit(main())
