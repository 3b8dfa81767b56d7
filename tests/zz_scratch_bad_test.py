import os, sys
sys.path.insert(0, "/tmp/scratch")
from tests import test_features as T
import bad_extract
from core import features
def test_bad(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "_extract", bad_extract._extract)
    T.test_memory_is_bounded_by_a_batch(tmp_path, monkeypatch)
