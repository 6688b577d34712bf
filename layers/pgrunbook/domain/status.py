"""Report statuses, and the exit status each one gives: decided here and nowhere else.

============  ================================================================  ====
``ok``        nothing to report                                                 0
``warning``   something to look at; the operation did its work                  0
``skipped``   another run held the lock: nothing to do                          0
``critical``  a problem found: a check failed, or the run could not complete    1
``untested``  a backup could not be tested: the restore target cannot host it   1
              (an extension, a collation, a language it lacks); nothing is
              known about the backup, which is why it is not ``ok``
``refused``   bad input, or unreachable at the start: nothing was changed       2
============  ================================================================  ====
"""

from __future__ import annotations

STATUSES = ("ok", "warning", "critical", "untested", "skipped", "refused")
EXIT_CODES = {"ok": 0, "warning": 0, "skipped": 0, "critical": 1, "untested": 1, "refused": 2}


def exit_code(status: str) -> int:
    """The exit status of a command whose report has ``status``."""
    return EXIT_CODES[status]
