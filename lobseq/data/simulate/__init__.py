"""Built-in market simulator: LOBSTER-format order books and daily OHLCV bars.

- `simulate_lobster` (`lobster.py`) writes LOBSTER message/orderbook file
  pairs from the queue-reactive order book model in `queue_reactive.py`.
- `simulate_bars` (`bars.py`) writes daily OHLCV bars from a regime-switching
  AR(1)-GARCH(1,1) model.

Both are deterministic for a seed (one ``numpy.random.Generator``) and write
every file atomically: files are built in a hidden staging folder inside
``out_dir`` (each via :func:`lobseq.io.atomic_file`) and renamed into place
only after all of them succeeded, so a failed call leaves ``out_dir`` as it
was (`common.staged`).
"""

from lobseq.data.simulate.bars import simulate_bars
from lobseq.data.simulate.lobster import EMPTY_ASK, EMPTY_BID, simulate_lobster

__all__ = ["EMPTY_ASK", "EMPTY_BID", "simulate_bars", "simulate_lobster"]
