"""``faceid serve``: a REST API and a web page over one gallery, with the models kept warm.

Needs the ``serve`` extra (``pip install 'faceid[serve]'``: FastAPI, uvicorn, python-multipart).
:func:`create_app` builds the ASGI app; :func:`serve` runs it with uvicorn. Nothing heavy is
imported until one of them is called.
"""

from __future__ import annotations

from faceid.server.settings import Settings

__all__ = ["Settings", "create_app", "require_server_packages", "serve"]


def require_server_packages() -> None:
    """Raise a one-line :class:`~faceid.errors.FaceIDError` if FastAPI, uvicorn or python-multipart is missing."""
    import importlib.util

    from faceid.errors import FaceIDError

    missing = [m for m in ("fastapi", "uvicorn", "multipart") if importlib.util.find_spec(m) is None]
    if missing:
        names = {"multipart": "python-multipart"}
        raise FaceIDError(
            f"faceid serve needs {', '.join(names.get(m, m) for m in missing)}: pip install 'faceid[serve]'"
        )


def create_app(*args, **kwargs):
    """See :func:`faceid.server.app.create_app`."""
    require_server_packages()
    from faceid.server.app import create_app as make

    return make(*args, **kwargs)


def serve(*args, **kwargs) -> None:
    """See :func:`faceid.server.app.serve`."""
    require_server_packages()
    from faceid.server.app import serve as run

    run(*args, **kwargs)
