"""asyncssh, imported once without the deprecation notices it triggers.

asyncssh 2.24 names cryptography's DSA types at import time, and cryptography 51 deprecates them:
five warnings on every import, none about anything the lab does (it never uses DSA keys). They
would reach the operator's terminal and break the SSH endpoint's one-line error on a bad config.
"""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import asyncssh

__all__ = ["asyncssh"]
