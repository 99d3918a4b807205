"""lobseq: forecast price direction from price series and limit-order-book data."""

__version__ = "0.1.0"
