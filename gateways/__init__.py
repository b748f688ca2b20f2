"""Gateways translate the outside world into hub calls and hub events back: HTTP API, board websocket."""
