"""The agent that keeps a Diffgram host's SSO settings in step with the console."""

# The one file operators download from the console and run: this package as a zip application.
DOWNLOAD_NAME = "diffgram_sso_agent.py"
