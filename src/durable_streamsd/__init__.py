"""durable-streamsd: a standalone server for the Durable Streams protocol."""

__version__ = "0.1.0"
