"""HTTP routers: thin layers that parse, call one service method and shape the response."""

from fastapi import APIRouter

from . import connections, servers, sessions, system

#: Every router of the API, in the order the app includes them (and the OpenAPI document lists them).
ROUTERS: tuple[APIRouter, ...] = (system.router, sessions.router, servers.router, connections.router)
