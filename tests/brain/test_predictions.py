import json

import numpy as np
import pytest

from breachlab.brain.corpus import Message
from breachlab.brain.predictions import PredictionStoreError, StoreMeta, StoreWriter, load_store

MSG = Message(id="m1", type="phishing", language="en", text="x")


def _store(tmp_path, arr=None):
    w = StoreWriter(tmp_path, StoreMeta(model="test"))
    w.add(MSG, "text", np.zeros((3, 20484), np.float32) if arr is None else arr)
    w.close()
    return tmp_path


def test_roundtrip(tmp_path):
    s = load_store(_store(tmp_path))
    (e,) = s.entries
    assert e.key == ("m1", "text") and e.n_tr == 3 and s.array(e).shape == (3, 20484)
    assert s.title_tag == ""


@pytest.mark.parametrize("arr,msg", [
    (np.zeros((3, 20000)), "expected 20484 fsaverage5 vertices, got 20000"),
    (np.zeros((20484, 3)), "transposed"),
    (np.zeros(20484), "expected shape"),
    (np.zeros((0, 20484)), "n_TR = 0"),
    (np.zeros((2, 20484), int), "floating-point"),
])
def test_writer_rejects_bad_arrays(tmp_path, arr, msg):
    with pytest.raises(PredictionStoreError, match=msg):
        StoreWriter(tmp_path, StoreMeta(model="t")).add(MSG, "text", arr)


def test_load_rejects_nan_missing_mismatch_and_format(tmp_path):
    root = _store(tmp_path)
    f = root / "predictions" / "m1.text.npy"
    bad = np.zeros((3, 20484), np.float32)
    bad[1, 7] = np.nan
    np.save(f, bad)
    with pytest.raises(PredictionStoreError, match="NaN/inf value\\(s\\), first at TR 1, vertex 7"):
        load_store(root)
    np.save(f, np.zeros((4, 20484), np.float32))
    with pytest.raises(PredictionStoreError, match="n_tr=3 but the file has 4"):
        load_store(root)
    f.unlink()
    with pytest.raises(PredictionStoreError, match="missing file"):
        load_store(root)
    idx = root / "predictions" / "index.json"
    data = json.loads(idx.read_text())
    data["format"] = "other/9"
    idx.write_text(json.dumps(data))
    with pytest.raises(PredictionStoreError, match="format"):
        load_store(root)
    with pytest.raises(PredictionStoreError, match="not a predictions directory"):
        load_store(tmp_path / "nothing")


def test_load_rejects_duplicates_and_bad_path(tmp_path):
    root = _store(tmp_path)
    idx = root / "predictions" / "index.json"
    data = json.loads(idx.read_text())
    data["entries"].append(dict(data["entries"][0]))
    idx.write_text(json.dumps(data))
    with pytest.raises(PredictionStoreError, match="duplicate entry"):
        load_store(root)
    data["entries"] = [dict(data["entries"][0], path="smell")]
    idx.write_text(json.dumps(data))
    with pytest.raises(PredictionStoreError, match="path 'smell'"):
        load_store(root)
