import numpy as np
import pytest

from breachlab.brain import rois
from breachlab.errors import UserError


def _toy():
    labels = np.zeros(rois.N_VERTICES, int)
    labels[:10] = 1          # lh_A
    labels[10:20] = 2        # lh_B
    labels[rois.N_HEMI:rois.N_HEMI + 30] = 3  # rh_A
    names = {1: "lh_A", 2: "lh_B", 3: "rh_A"}
    return labels, names


def test_build_rois_bilateral_and_hemispheres_hand_computed():
    labels, names = _toy()
    rs = rois.build_rois({"X": {"destrieux": ["A"]}, "deep": {"subcortical": True}}, labels, names, "destrieux")
    assert rs.masks["X"].sum() == 40 and rs.masks["X_lh"].sum() == 10 and rs.masks["X_rh"].sum() == 30
    m = np.zeros(rois.N_VERTICES)
    m[:10] = 1.0
    m[rois.N_HEMI:rois.N_HEMI + 30] = 3.0
    means = rois.roi_means(m, rs)
    assert means["X_lh"] == 1.0 and means["X_rh"] == 3.0 and means["X"] == pytest.approx((10 + 90) / 40)
    assert means["deep"] is None  # not predicted, never 0


def test_unknown_label_is_an_error():
    labels, names = _toy()
    with pytest.raises(UserError, match="not in atlas destrieux: Nope"):
        rois.build_rois({"X": {"destrieux": ["A", "Nope"]}}, labels, names, "destrieux")


def test_missing_data_dir_message(monkeypatch, tmp_path):
    from breachlab.datadir import data_file

    monkeypatch.setenv("BREACHLAB_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="BREACHLAB_DATA"):
        data_file("atlases", "fsaverage5_parcellations.npz")


REFERENCE = {  # shared/data/README.md, checked against nilearn's fsaverage5 pial mesh
    "lh_G_front_middle": (-37, 33, 32),
    "lh_Pole_occipital": (-18, -99, -7),
    "lh_G_and_S_cingul.Ant": (-7, 40, 7),
}


def test_reference_centroids(need_data):
    labels, names = rois.load_atlas("destrieux")
    coords, _ = rois.fsaverage5_mesh("pial")
    ids = {v: k for k, v in names.items()}
    for name, ref in REFERENCE.items():
        c = coords[labels == ids[name]].mean(axis=0)
        assert np.allclose(c, ref, atol=1.0), (name, c)


@pytest.mark.parametrize("atlas", ["destrieux", "glasser"])
def test_roi_centroids_sit_where_anatomy_says(need_data, atlas):
    rs = rois.load_rois(atlas)
    coords, _ = rois.fsaverage5_mesh("pial")
    c = rois.roi_centroids(rs, coords)
    for h, sign in (("lh", -1), ("rh", 1)):
        x, y, z = c[f"dlPFC_{h}"]
        assert sign * x > 25 and y > 15 and z > 15          # lateral, anterior, dorsal
        x, y, z = c[f"ACC_{h}"]
        assert abs(x) < 12 and y > 10 and z > 0              # medial, anterior
        x, y, z = c[f"insula_{h}"]
        assert 28 < sign * x < 45 and -15 < y < 20 and -10 < z < 10
        x, y, z = c[f"visual_cortex_{h}"]
        assert y < -65                                       # occipital
        x, y, z = c[f"TPJ_{h}"]
        assert sign * x > 40 and -70 < y < -25 and z > 15
    assert set(rs.subcortical) == {"amygdala", "NAcc"}
    for roi in rs.bilateral:
        assert not (rs.masks[f"{roi}_lh"] & rs.masks[f"{roi}_rh"]).any()
        assert (rs.masks[f"{roi}_lh"] | rs.masks[f"{roi}_rh"]).sum() == rs.masks[roi].sum()
