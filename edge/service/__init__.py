"""The always-on service (``edge-intent serve``), one module per job.

* :mod:`edge.service.lifecycle`: start, the main loop, SIGHUP reload, SIGTERM stop, ``/healthz`` and ``/metrics``;
* :mod:`edge.service.systemd`: ``sd_notify`` messages, watchdog pings, journal log lines;
* :mod:`edge.service.listener`: the microphone, opened with the one backoff policy, under the live loop;
* :mod:`edge.service.http`: the HTTP API server; :mod:`edge.service.wyoming`: the Wyoming server;
* :mod:`edge.service.reload`: the options kept over a reload, and what a new configuration changes;
* :mod:`edge.service.install`: ``edge-intent install-service``.

The chain they serve is built by :mod:`edge.assistant`; the options are parsed in ``edge/cli/serve.py``.
"""
