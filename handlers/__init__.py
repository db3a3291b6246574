"""The HTTP side, one module per idea:

- ``base``: plain-text errors, answers never cached (``UncachedHandler``),
  and holding a request (``HoldingHandler``);
- ``eventsource``: the generic event source, like CppCMS's
  ``sse::event_source``: it serves any policy of ``comet.policies``;
- ``chat``: ``/chat/post``, ``/chat/get/N``, ``/chat/since/N``, ``/chat/events``;
- ``ticker``: ``/ticker``;
- ``pages``: ``/``, ``/chat``, ``/stock``, ``/status``, static files, 404s;
- ``past_tornado``: the one place that reaches past Tornado's public API.
"""
