"""Provider batch mode (a tier with ``mode: batch``): the tier batch's durable record and
outcomes (``record.py``), and the engine that submits its rounds as provider batches and
collects them (``engine.py``). The wire protocols are ``workers/batchapi.py``; the pure
part (policy section, limits, custom ids, splitting) is ``routing/batching.py``.
"""
