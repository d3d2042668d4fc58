"""The test settings with memory on (magicmirror/settings_test.py turns it off for the rest of the
suite): the settings of the live server of tests/test_memory_browser.py that recalls and learns."""

from magicmirror.settings_test import *  # noqa: F403

MEMORY_ENABLED = True
