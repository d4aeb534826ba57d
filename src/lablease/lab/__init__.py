"""The lab service: locking a cloud node provisions it, unlocking destroys it (``lablease serve`` with ``libcloud:``)."""
