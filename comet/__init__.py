"""What the site knows that has nothing to do with HTTP.

- ``policies``: the two event-source policies of CppCMS's ``sse`` contrib,
  ``BoundedEventQueue`` (the chat) and ``StateStream`` (the ticker), and the
  frame encoder they share;
- ``clients``: the registry of requests the server is holding;
- ``walk``: the ticker's random walk;
- ``engine``: where the history and the price live, ``MemoryEngine`` by
  default and ``redis_engine.RedisEngine`` with ``--redis``; one interface.

Nothing here knows about requests and responses: the handlers in
``handlers/`` are the only HTTP code.
"""
