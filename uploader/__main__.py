from __future__ import annotations

from shared.signals import run_service
from uploader.main import main

if __name__ == "__main__":
    run_service(main)
