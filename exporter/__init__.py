"""De-identifying research export of DICOM studies.

The package is a library with a thin command line on top (``exporter.cli``).
Only the command line configures logging; the library logs through
``logging.getLogger(__name__)`` and never logs identifying values.
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
