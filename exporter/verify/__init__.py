"""Evidence that nothing identifying got out.

While exporting, the worker notes the identifying values it saw
(:mod:`~exporter.verify.witness`); ``exporter verify`` then looks for them in
every byte, element, column and path of the export, in the spellings free text
gives them (:mod:`~exporter.verify.needles`, :mod:`~exporter.verify.scan`).
"""
