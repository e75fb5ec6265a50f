"""Local emulator of Yandex Metrika's APIs (Logs API; offline conversions to come).

Use ``sandbox.app.create_app(SandboxConfig(...))`` or ``python -m sandbox --port 8081``.
"""

from __future__ import annotations
