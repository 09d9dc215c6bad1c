"""Accuracy measurements: the LFW verification protocol and an open-set identification protocol.

Everything here reuses the exact pipeline faceid identifies with, and the embedding cache, so a
second run over the same images does not run the networks again. Metrics come from
``sklearn.metrics``.

LFW image policy: the face used is the detection nearest the image centre (LFW photos are
centred on their subject); where MTCNN finds no face, a fixed central box (the median MTCNN box
of LFW) is embedded instead, and the count of such images is reported.

Failures are not missing faces. An image that cannot be read (``unreadable``) or that the face
pipeline failed on (``failed``) gets no embedding, not the fallback box; each is counted and its
message reported apart from ``no_face``. In LFW verification a pair with such an image counts as
wrong in every measure (:func:`pair_scores`): leaving it out would flatter the figures with the
very images faceid could not handle. In the open-set protocol such an image is left out (a
person whose every enrolment photo failed is not enrolled, so their probes count as misses) and
the count is reported.

One job a module: :mod:`~faceid.eval.lfw` (LFW's files and embeddings),
:mod:`~faceid.eval.verification`, :mod:`~faceid.eval.plots`, :mod:`~faceid.eval.openset`,
:mod:`~faceid.eval.fpir` (thresholds at a target FPIR), :mod:`~faceid.eval.sizes` (threshold per
gallery size), :mod:`~faceid.eval.grouping` (grouping unknown faces, measured on LFW) and
:mod:`~faceid.eval.detectors` (how two detectors' landmarks change the same faces' embeddings).
No product module imports this package except :mod:`faceid.calibrate` (from :mod:`~faceid.eval.fpir`).
"""
