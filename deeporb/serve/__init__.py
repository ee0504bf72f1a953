"""``serve.py``: the HTTP API and page (app), the request fields, the batching queue, the model
side (service) and the run folder of pieces."""
