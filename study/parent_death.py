"""Processes that do not outlive their parent: Linux's parent-death signal (prctl PR_SET_PDEATHSIG).

A worker of a study whose supervising command was SIGKILLed, or a torchrun job whose worker died, would go on
training a cell that the next command re-queues elsewhere. `die_with_parent` asks the kernel to send SIGTERM to
this process when its parent dies; `ending_with_this_process` gives a `preexec_fn` that does so in a child before
it runs. No torch here: supervisors and workers import it before they import anything heavy. Elsewhere than Linux
both do nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from functools import partial

PR_SET_PDEATHSIG = 1


def _prctl() -> Callable[..., int] | None:
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # resolved once here: a preexec_fn must not import or dlopen between fork and exec


def die_with_parent(parent: int | None = None) -> None:
    """Get SIGTERM when the parent process dies. `parent`: its pid if known (a preexec_fn knows it), so a parent
    that died before the request is noticed under a subreaper too; else a parent that is already gone means
    being adopted by init (pid 1)."""
    if _PRCTL is None:
        return
    _PRCTL(PR_SET_PDEATHSIG, int(signal.SIGTERM))
    if (os.getppid() != parent) if parent is not None else (os.getppid() == 1):
        os.kill(os.getpid(), signal.SIGTERM)


def ending_with_this_process() -> Callable[[], None] | None:
    """A subprocess `preexec_fn` that makes the child end with this process (None where it cannot)."""
    return partial(die_with_parent, os.getpid()) if _PRCTL is not None else None
