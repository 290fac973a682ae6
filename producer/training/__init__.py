"""The commands that learn and measure routers (``cmd.py``: eval, calibrate, train,
feedback, retrain); the label sets and held-out metrics they use are
:mod:`routing.learned.labels` and :mod:`routing.learned.validation`."""
