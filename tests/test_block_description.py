"""The blocked structure each design gets is exposed on the fit (issue 4)."""
from conftest import fit_case


def test_single_factor_is_batched_block_diagonal():
    bd = fit_case("sleepstudy_rs_reml").block_description
    assert list(bd["storage"]) == ["BlkDiag", "Dense"]
    assert bd["size"].iloc[0] == "18 blocks of 2x2"


def test_nested_and_crossed_blocks():
    bd = fit_case("pastes_reml").block_description
    assert list(bd["rows"][:3]) == ["cask:batch", "batch", "batch"]
    # nested: one batch per cask, and the batch block is block diagonal (batched), not dense
    assert list(bd["storage"][:3]) == ["BlkDiag", "Sparse", "BlkDiag"]
    assert bd["size"].iloc[1] == "30 nonzero 1x1 blocks"
    assert bd["size"].iloc[2] == "10 blocks of 1x1 (first factor nested)"
    bd = fit_case("penicillin_reml").block_description
    assert bd["size"].iloc[1] == "144 nonzero 1x1 blocks"  # crossed: every plate meets every sample
    assert bd["storage"].iloc[2] == "Dense"
