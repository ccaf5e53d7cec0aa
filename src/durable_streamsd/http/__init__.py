"""HTTP/1.1 on httptools inside an asyncio.Protocol: parsing, keep-alive,
pipelining, limits, flow control and response writing. Knows nothing of
streams: it hands complete requests to a handler and writes what it is told."""

from .connection import HttpConnection, serve
from .limits import HttpLimits
from .request import Handler, Request
from .response import Responder

__all__ = ["Handler", "HttpConnection", "HttpLimits", "Request", "Responder", "serve"]
