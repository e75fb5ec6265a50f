"""Local emulator of Yandex Metrika's APIs: the Logs API, offline conversions and goals.

Use ``sandbox.app.create_app(SandboxConfig(...))`` or ``python -m sandbox --port 8081``.
"""

from __future__ import annotations
