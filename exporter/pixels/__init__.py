"""Burned-in text in pixel data: find it (OCR) and scrub it.

Needs the ``pixels`` extra (RapidOCR with the models its wheel ships, run on
onnxruntime; nothing is downloaded at run time).
"""
