"""Ctrl-C and SIGTERM during training: finish the step, save a checkpoint, then stop.

Without this a stop loses every step since the last checkpoint. The first SIGINT or SIGTERM
only asks the loop to stop; the loop saves a checkpoint at the end of the step it is in
(atomically, once) and raises KeyboardInterrupt after saying where it saved. A second signal
stops at once, as Ctrl-C normally does (a checkpoint being written is then removed, never
left half-written).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType


class StopRequest:
    """Within `with StopRequest() as stop:`, `stop.requested` names the first stop signal received."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(number).name
        print(
            f"\n{self.requested}: stopping after this step and saving a checkpoint (again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> StopRequest:
        # Signal handlers can only be set from the main thread; elsewhere the defaults stay.
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
