"""The live dashboard: a static page (vendored uPlot, no CDN) and the sample it polls.

``snapshot`` builds the JSON the page polls; ``assets`` serves the page and its files
from the package. The HTTP handlers live in :mod:`interlock.api.dashboard`.

Vendored: uPlot 1.6.32 (MIT, ``static/uPlot.LICENSE``), the files ``dist/uPlot.iife.min.js``
and ``dist/uPlot.min.css`` of ``npm pack uplot@1.6.32``. To upgrade, replace those three
files from the new tarball; nothing is built.
"""
