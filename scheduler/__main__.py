from __future__ import annotations

from scheduler.main import main
from shared.signals import run_service

if __name__ == "__main__":
    run_service(main)
