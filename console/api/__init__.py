"""The console's JSON APIs under /api/v1/: what Diffgram instances call (pull.py, instance
tokens), automation (automation.py and federation.py, personal tokens), and their OpenAPI
description (openapi.py). Token parsing, JSON bodies, methods and errors: decorators.py."""
