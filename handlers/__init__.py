"""Request handlers, one module per idea: the generic event source and its two
policies, the chat, the ticker, and the pages."""
