"""The web face: what the http listener answers, as routes (path -> handler).

Handlers take a Request and return a Response; they call the same functions
as the CLI and never touch a socket (net/http_server.py does the HTTP).
Must not import hatoba.net."""
