"""Cleaning plug-ins used by tests/test_clean_plugins.py (named in config as ``tests.plugins.<module>:<Class>``)."""
