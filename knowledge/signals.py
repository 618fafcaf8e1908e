"""What the knowledge base announces.

- ``knowledge_imported(result)``: sent with ``sender=None`` once an import that changed
  anything has committed (``knowledge.imports.do_import_knowledge``); ``result`` is its
  ``ImportResult``. Whatever depends on the articles as a whole (the decline threshold's
  calibration, the grounded tuning) receives it and decides whether to run again; the knowledge
  app imports none of them.
"""

from django.dispatch import Signal

knowledge_imported = Signal()
