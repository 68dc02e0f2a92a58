"""The self-hosted embedding model: all-MiniLM-L6-v2 served as an OpenAI ``/v1/embeddings``.

It runs as its own process (``python -m interlock.localembed``), so PyTorch's memory
is paid once, not once per gateway worker, and the gateway reaches it like any other
OpenAI-compatible deployment. Concurrent requests are micro-batched into one forward
pass. Install with ``pip install 'interlock[local]'``.
"""

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
READY_PREFIX = "interlock local embeddings listening on "
