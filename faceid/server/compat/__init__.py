"""Drop-in answers for clients written for other face services: CompreFace's recognition API
(:mod:`.compreface`, under ``/api/v1/recognition/``) and DeepStack's face API (:mod:`.deepstack`,
under ``/v1/vision/face``), each a thin translation onto the same library calls, gallery, keys
and limits as faceid's own routes (docs/compat.md).

- :mod:`.scale`: the one similarity scale both answer on (faceid's decision at 0.60)
- :mod:`.recognise`: an image's faces, decided, with each face's best subjects on that scale
- :mod:`.keys`: the key of a request from any of the places those clients put it
- :mod:`.formkey`: DeepStack's form-field key, read before the upload is accepted
"""

from faceid.server.compat import compreface, deepstack

__all__ = ["compreface", "deepstack", "routers"]


def routers() -> list:
    """The routers to include: CompreFace's, then DeepStack's."""
    return [compreface.router, deepstack.router]
