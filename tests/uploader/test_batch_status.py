from __future__ import annotations

from uploader.batch_status import decide


def test_the_least_advanced_file_decides_and_failures_end_in_error():
    assert decide([], ok_rows=3) is None
    assert decide([], ok_rows=0, failed_rows=1)[0] == "error"
    assert decide([], ok_rows=0, failed_rows=0) == ("completed", None)  # every row a duplicate
    assert decide(["new", "processed"], 2) == ("pending", None)
    assert decide(["uploading", "uploaded"], 2) == ("pending", None)
    assert decide(["uploaded", "processing"], 2) == ("uploaded", None)
    assert decide(["processing", "processed"], 2) == ("processing", None)
    assert decide(["processed", "processed"], 2) == ("completed", None)
    status, error = decide(["processed", "failed"], 2)
    assert status == "error" and "1 of 2" in error
