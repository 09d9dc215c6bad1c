"""The API's routes, one module per resource: :mod:`.service` (the page, health), :mod:`.identify`,
:mod:`.people` (people and their faces), :mod:`.review` (kept unknown faces), :mod:`.verify` (1:1).
Each has a ``router`` that :func:`faceid.server.app.create_app` includes; auth is a dependency
(:mod:`faceid.server.auth`), errors the handlers of :mod:`faceid.server.errors`.
"""

from faceid.server.routes import identify, people, review, service, verify

__all__ = ["identify", "people", "review", "service", "verify"]
