"""``python -m producer`` is the ``batch-router`` command."""

from producer.cli import main

main()
