"""The OpenAI Batch API (``/v1/files``, ``/v1/batches``) on top of the job queue.

``lines`` checks uploaded JSONL, ``store`` keeps files, batches and lines in SQL,
``service`` holds the API's rules, ``driver`` runs batches through the job queue and
``views`` renders OpenAI's objects. docs/batch.md is the reference.
"""
