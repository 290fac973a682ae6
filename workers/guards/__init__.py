"""The guards a tier batch is served under: the budget ledger (``ledger``), circuit breakers
(``breaker``), global rate limits (``ratelimit``), the job's retry budget (``retry_budget``)
and the response cache (``cache``), bundled per policy in :class:`bundle.Guards`; ``lua``
runs their Lua scripts (``workers/scripts/*.lua``) on this process's ``redis.asyncio``
client. Their Redis keys are built in ``workers/keys.py``.
"""
