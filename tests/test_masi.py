"""MASI / mMASI scoring, severity bins and consensus."""

import math

import pytest

from melasma.masi import REGION_WEIGHTS, REGIONS, RaterScores, consensus, masi, mmasi, region_score, severity


def uniform(area: int, darkness: int, homogeneity: int) -> dict:
    return {r: {"area": area, "darkness": darkness, "homogeneity": homogeneity} for r in REGIONS}


WORKED = {
    "forehead": {"area": 3, "darkness": 2, "homogeneity": 2},     # 0.3*3*4 = 3.6
    "right_malar": {"area": 4, "darkness": 3, "homogeneity": 2},  # 0.3*4*5 = 6.0
    "left_malar": {"area": 2, "darkness": 1, "homogeneity": 1},   # 0.3*2*2 = 1.2
    "chin": {"area": 1, "darkness": 1, "homogeneity": 0},         # 0.1*1*1 = 0.1
}


def test_regions_are_the_four_masi_regions():
    assert REGIONS == ("forehead", "right_malar", "left_malar", "chin")


def test_worked_example():
    assert masi(WORKED) == pytest.approx(10.9)
    # mMASI: 0.3*3*2 + 0.3*4*3 + 0.3*2*1 + 0.1*1*1 = 1.8 + 3.6 + 0.6 + 0.1
    assert mmasi(WORKED) == pytest.approx(6.1)


def test_rater_scores_are_validated_once_and_carry_their_masi():
    entry = RaterScores.from_raw({**WORKED, "chin": {"area": 1.0, "darkness": 1, "homogeneity": 0}})
    assert (entry.masi, entry.mmasi) == (masi(WORKED), mmasi(WORKED)) == (pytest.approx(10.9), pytest.approx(6.1))
    assert entry.regions == WORKED and type(entry.regions["chin"]["area"]) is int  # 1.0 stored as 1
    with pytest.raises(ValueError, match="chin.darkness must be an integer 0-4"):
        RaterScores.from_raw({**WORKED, "chin": {"area": 1, "darkness": 5, "homogeneity": 0}})


def test_region_score_is_the_term_masi_weights():
    assert region_score(4, 3, 2) == 20 and region_score(**WORKED["chin"]) == 1
    assert region_score(6, 4, 4) == 48 and region_score(0, 4, 4) == 0
    assert sum(REGION_WEIGHTS[r] * region_score(**WORKED[r]) for r in REGIONS) == pytest.approx(masi(WORKED))


def test_extremes():
    assert masi(uniform(0, 0, 0)) == 0
    assert masi(uniform(6, 4, 4)) == pytest.approx(48.0)
    assert mmasi(uniform(6, 4, 4)) == pytest.approx(24.0)


@pytest.mark.parametrize(
    "value, expected",
    [(0, "mild"), (15.99, "mild"), (16, "moderate"), (31.99, "moderate"), (32, "severe"), (48, "severe")],
)
def test_masi_boundaries(value, expected):
    assert severity(value) == expected


@pytest.mark.parametrize(
    "value, expected", [(7.99, "mild"), (8, "moderate"), (15.99, "moderate"), (16, "severe"), (24, "severe")]
)
def test_mmasi_boundaries(value, expected):
    assert severity(value, scale="mmasi") == expected


def test_custom_cutoffs():
    assert severity(20, cutoffs=(21, 30)) == "mild"
    assert severity(30, cutoffs=(21, 30)) == "severe"
    with pytest.raises(ValueError, match="cut-offs"):
        severity(20, cutoffs=(30, 21))


@pytest.mark.parametrize("value", [-0.01, 48.01, math.nan, "12", None])
def test_severity_rejects_out_of_range(value):
    with pytest.raises(ValueError, match="0-48"):
        severity(value)


def test_severity_rejects_unknown_scale():
    with pytest.raises(ValueError, match="scale"):
        severity(10, scale="pasi")


@pytest.mark.parametrize(
    "item, value, allowed",
    [
        ("area", 7, "0-6"), ("area", -1, "0-6"), ("area", 2.5, "0-6"), ("area", math.nan, "0-6"),
        ("area", "3", "0-6"), ("area", True, "0-6"), ("darkness", 5, "0-4"), ("homogeneity", -1, "0-4"),
    ],
)
def test_invalid_item_names_field_and_range(item, value, allowed):
    scores = uniform(2, 2, 2)
    scores["left_malar"][item] = value
    with pytest.raises(ValueError, match=rf"left_malar\.{item}.*{allowed}"):
        masi(scores)


def test_integral_floats_are_accepted():
    scores = uniform(2, 2, 2)
    scores["chin"]["area"] = 3.0
    assert masi(scores) == pytest.approx(0.3 * 2 * 4 * 3 + 0.1 * 3 * 4)


def test_missing_region_and_item_and_unknown_region():
    scores = uniform(1, 1, 1)
    del scores["chin"]
    with pytest.raises(ValueError, match="missing region 'chin'"):
        masi(scores)
    scores = uniform(1, 1, 1)
    del scores["forehead"]["darkness"]
    with pytest.raises(ValueError, match=r"forehead\.darkness is missing"):
        masi(scores)
    scores = uniform(1, 1, 1)
    scores["nose"] = {"area": 1, "darkness": 1, "homogeneity": 1}
    with pytest.raises(ValueError, match="unknown region 'nose'"):
        masi(scores)


def test_consensus_is_mean_of_rater_masi():
    raters = [uniform(2, 2, 2), uniform(3, 2, 2), uniform(4, 3, 3)]
    per = [masi(r) for r in raters]
    result = consensus(raters)
    assert result.per_rater == per
    assert result.masi == pytest.approx(sum(per) / 3)
    assert result.spread == pytest.approx(max(per) - min(per))
    assert result.severity == severity(result.masi)
    assert result.region_means["forehead"]["area"] == pytest.approx(3.0)


def test_consensus_bins_the_mean_not_the_votes():
    # two raters just below 16, one far above: the mean lands in "moderate"
    low = uniform(2, 2, 2)  # 0.3*2*4*3 + 0.1*2*4 = 8.0
    high = uniform(6, 3, 3)  # 36.0
    result = consensus([low, low, high])
    assert result.masi == pytest.approx(52 / 3)
    assert result.severity == "moderate"


def test_consensus_rejects_empty_and_bad_rater():
    with pytest.raises(ValueError, match="non-empty"):
        consensus([])
    bad = uniform(1, 1, 1)
    bad["chin"]["area"] = 9
    with pytest.raises(ValueError, match=r"chin\.area"):
        consensus([uniform(1, 1, 1), bad])
