"""The HTTP side, one module per idea:

- ``base``: plain-text errors, answers never cached (``UncachedHandler``),
  and holding a request (``HoldingHandler``);
- ``eventsource``: the generic event source, like CppCMS's
  ``sse::event_source``: it serves any policy of ``comet.policies``;
- ``chat``: ``/chat/post``, ``/chat/get/N``, ``/chat/since/N``, ``/chat/events``;
- ``ticker``: ``/ticker``;
- ``pages``: ``/``, ``/chat``, ``/stock``, ``/status``, static files, 404s;
- ``writer``: the seam between the held handlers and the socket, chosen once
  at start (``--writer``): ``PlainWriter``, Tornado's public API alone;
- ``fast_writer``: ``FastWriter``, the one place that reaches past Tornado's
  public API, for speed; it checks at start what it relies on, and the
  plain writer serves when something is missing.
"""
