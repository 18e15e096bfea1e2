"""`python -m agent` runs the agent from a checkout; operators run the one file the console
serves (console/agent_setup.py), which starts here too."""

import sys

from agent.diffgram_sso_agent import main

sys.exit(main())
