"""``python -m ai_content_pipeline.cli``: the ``aicp`` command."""

from .main import main

main()
