"""HTTP routers: thin layers that parse, call one service method and shape the response."""
