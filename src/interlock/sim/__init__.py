"""The simulated provider: a real HTTP server speaking the OpenAI, Azure OpenAI,
Anthropic, Gemini / Vertex AI and AWS Bedrock Converse wire formats, deterministic for a
seed, with fault injection, latency shaping, a ledger and a control API.

Start it: ``python -m interlock.sim --host 127.0.0.1 --port 0 --seed 0 --ttft-ms 0
--tokens-per-s 0 --output-tokens 16 [--config-json '{...}']``; it prints one line,
``interlock sim listening on http://HOST:PORT``. Embed it: :func:`create_app` (an
``aiohttp.web.Application``) or ``interlock.sim.__main__.run_sim``; from tests and
benchmarks, ``interlock.sim.process.start_sim_process``.

Model routes::

    POST /v1/chat/completions  /v1/completions  /v1/embeddings   GET /v1/models[/{id}]
    POST /openai/deployments/{deployment}/{chat/completions|completions|embeddings}
         (needs ``api-key`` header and ``api-version`` query parameter)
    POST /v1/messages  /v1/messages/count_tokens        (``x-api-key`` + ``anthropic-version``)
    POST /v1beta/models/{model}:{generateContent|streamGenerateContent|embedContent|
         batchEmbedContents|countTokens}                (``x-goog-api-key``)
    POST /v1/projects/{p}/locations/{l}/publishers/google/models/{model}:{...}
                                                        (``Authorization: Bearer``)
    POST /model/{modelId}/converse  /model/{modelId}/converse-stream    (SigV4 header)
    GET  /v1/organization/usage/completions  /v1/organization/usage/embeddings
         (OpenAI's usage API in its published shape, from the ledger: sim/usage.py)

Control API::

    GET  /_sim/health      {"status": "ok"}
    GET  /_sim/config      the SimConfig as JSON
    PUT  /_sim/config      partial update, e.g. {"ttft_ms": 50, "faults": [...]}; 400 on
                           unknown keys or bad values
    GET  /_sim/faults      active faults with their ``remaining`` counts
    POST /_sim/reset       clear ledger, request log and faults; body (optional): config
                           keys to set, plus ``"initial": true`` to restore the startup config
    GET  /_sim/ledger      {"totals": {...}, "by_model": {...}, "entries": [...]}
    GET  /_sim/requests    the last 200 model requests {method, path, query, query_string,
                           headers (lowercased), body (text, first 64 KiB)}

:class:`SimControl` wraps the control API for synchronous callers.

Rules a test can rely on: prompt tokens = matches of ``\\w+|[^\\w\\s]`` over all text
content + 3 per message (a system prompt counts as one) + 3; an answer is
``output_tokens`` vocabulary words (one word = one token) unless capped by the request's
max tokens or cut by a stop sequence; tool calls and JSON output count one token per
JSON piece. The same request under the same seed gets the same answer (streamed or not,
whatever its max tokens / stop / temperature); the request's own ``seed`` mixes in.
"""

from interlock.sim.config import SimConfig
from interlock.sim.control import SimControl
from interlock.sim.server import create_app

__all__ = ["SimConfig", "SimControl", "create_app"]
