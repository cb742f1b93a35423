"""Discrete solvers: α-expansion and graph cut against brute-force minima, seeds, scaling, worker failures."""

import itertools

import numpy as np
import pytest
import torch
from solver_workers import hang, kill_self, raise_on_second

from wss_monai.constants import UNLABELLED
from wss_monai.losses import potts_edge_weights, potts_energy
from wss_monai.losses.pairwise import grid_offsets
from wss_monai.solvers import (
    MAX_COST,
    PottsProblem,
    SolverError,
    SolverPool,
    alpha_expansion,
    binary_graph_cut,
    grid_pairs,
    integer_costs,
    potts_problem_energy,
)


def random_problem(shape, num_labels, neighbourhood, seed, **kwargs):
    rng = np.random.default_rng(seed)
    unary = rng.uniform(0, 3, size=(num_labels, *shape))
    offsets = grid_offsets(len(shape), neighbourhood)
    edges = []
    for offset in offsets:
        overlap = [n - abs(o) for n, o in zip(shape, offset)]
        edges.append((offset, rng.uniform(0, 1.5, size=overlap)))
    return PottsProblem(unary, edges, **kwargs)


def brute_force_minimum(problem):
    """The minimum of E over every labelling that keeps the seeds, all labellings at once."""
    shape = problem.spatial_shape
    labellings = np.array(list(itertools.product(problem.labels, repeat=int(np.prod(shape)))))
    labellings = labellings.reshape(-1, *shape)  # (M, *spatial)
    seeded = problem.seeds != UNLABELLED
    labellings = labellings[(labellings[:, seeded] == problem.seeds[seeded]).all(1)]
    energy = np.take_along_axis(problem.unary[None], labellings[:, None], 1).reshape(len(labellings), -1).sum(1)
    for offset, weight in problem.edges:
        a = tuple(slice(0, n - o) if o >= 0 else slice(-o, n) for n, o in zip(shape, offset))
        b = tuple(slice(o, n) if o >= 0 else slice(0, n + o) for n, o in zip(shape, offset))
        cut = labellings[(slice(None), *a)] != labellings[(slice(None), *b)]
        energy = energy + (weight[None] * cut).reshape(len(labellings), -1).sum(1)
    return energy.min()


@pytest.mark.parametrize(
    "shape, labels, neighbourhood",
    [((2, 3), 3, 4), ((2, 3), 3, 8), ((3, 3), 2, 8), ((2, 2, 2), 3, 6), ((2, 2, 2), 2, 26), ((1, 2, 3), 3, 18)],
)
def test_alpha_expansion_reaches_the_brute_force_minimum(shape, labels, neighbourhood):
    for seed in range(4):
        problem = random_problem(shape, labels, neighbourhood, seed)
        result = alpha_expansion(problem, sweeps=-1)
        assert potts_problem_energy(problem, result) == pytest.approx(brute_force_minimum(problem), rel=1e-4)


@pytest.mark.parametrize("shape, neighbourhood", [((3, 3), 4), ((3, 3), 8), ((2, 2, 2), 6), ((2, 2, 3), 26)])
def test_graph_cut_is_the_exact_binary_minimum(shape, neighbourhood):
    for seed in range(4):
        problem = random_problem(shape, 2, neighbourhood, seed)
        result = binary_graph_cut(problem)
        assert potts_problem_energy(problem, result) == pytest.approx(brute_force_minimum(problem), rel=1e-9)


def test_seeds_are_never_violated_even_against_the_unaries():
    # every voxel prefers label 0 strongly; seeds force labels 1 and 2 at two voxels
    unary = np.zeros((3, 4, 4))
    unary[1:] = 50.0
    seeds = np.full((4, 4), UNLABELLED)
    seeds[0, 0], seeds[3, 3] = 1, 2
    problem = random_problem((4, 4), 3, 8, 0, seeds=seeds)
    problem.unary = unary
    result = alpha_expansion(problem)
    assert result[0, 0] == 1 and result[3, 3] == 2 and (np.delete(result.ravel(), [0, 15]) == 0).all()
    binary = PottsProblem(unary[:2], problem.edges, seeds=np.where(seeds == 2, UNLABELLED, seeds))
    assert binary_graph_cut(binary)[0, 0] == 1
    # brute force with seeds agrees
    small = random_problem((2, 3), 3, 8, 1, seeds=np.array([[0, -1, -1], [-1, -1, 2]]))
    assert potts_problem_energy(small, alpha_expansion(small)) == pytest.approx(brute_force_minimum(small), rel=1e-4)


def test_seed_masks_and_labels_restricted_to_those_present():
    masks = np.zeros((4, 3, 3), dtype=bool)
    masks[0, 0, 0] = masks[2, 2, 2] = True
    problem = random_problem((3, 3), 4, 8, 3, seeds=masks, labels=[0, 2])
    assert problem.seeds[0, 0] == 0 and problem.seeds[2, 2] == 2
    assert set(np.unique(alpha_expansion(problem)).tolist()) <= {0, 2}
    assert set(np.unique(binary_graph_cut(problem)).tolist()) <= {0, 2}
    single = random_problem((3, 3), 4, 8, 3, labels=[3])
    assert (alpha_expansion(single) == 3).all()


def test_the_energy_is_the_grid_crf_energy_of_the_same_image():
    image = torch.rand(1, 2, 5, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (1, 1, 5, 6), generator=torch.Generator().manual_seed(1))
    edges = [(o, w[0, 0].numpy()) for o, w in potts_edge_weights(image, 8)]
    problem = PottsProblem(np.zeros((3, 5, 6)), edges)
    expected = potts_energy(labels, image, 8).item() * 30  # per voxel there
    assert potts_problem_energy(problem, labels[0, 0].numpy()) == pytest.approx(expected, rel=1e-5)


def test_grid_pairs_are_ordered_and_cover_every_edge():
    s1, s2, w = grid_pairs((3, 4), [(o, np.ones([3 - abs(o[0]), 4 - abs(o[1])])) for o in grid_offsets(2, 8)])
    assert (s1 < s2).all() and len(s1) == 3 * 3 + 2 * 4 + 2 * 2 * 3  # horizontal, vertical, two diagonals
    assert len(set(zip(s1.tolist(), s2.tolist()))) == len(s1)


def test_overflow_sized_costs_are_scaled_and_clipped_not_a_crash():
    problem = random_problem((4, 4), 3, 8, 2)
    problem.unary = problem.unary * 1e12
    problem.edges = [(o, w * 1e15) for o, w in problem.edges]
    unary, _, _, w, scale = integer_costs(problem)
    assert unary.max() <= MAX_COST and w.max() <= MAX_COST and scale < 1e-6
    result = alpha_expansion(problem)  # GCO would abort the process on a term above 1e7
    assert result.shape == (4, 4)
    reference = random_problem((4, 4), 3, 8, 2)  # the same problem at its own scale: same answer
    reference.edges = [(o, w * 1e3) for o, w in reference.edges]
    assert (alpha_expansion(reference) == result).all()


def test_bad_inputs_name_the_case():
    with pytest.raises(SolverError, match=r"slice 4: the unary costs hold 1 NaN"):
        unary = np.zeros((2, 2, 2))
        unary[0, 1, 1] = np.nan
        PottsProblem(unary, case="slice 4")
    with pytest.raises(SolverError, match=r"p7: seed labels \[5\] are outside range\(3\)"):
        PottsProblem(np.zeros((3, 2, 2)), seeds=np.array([[5, -1], [-1, -1]]), case="p7")
    with pytest.raises(SolverError, match=r"p8: 1 voxels are seeds of two labels or more \(first at \(0, 1\)\)"):
        masks = np.zeros((2, 2, 2), dtype=bool)
        masks[:, 0, 1] = True
        PottsProblem(np.zeros((2, 2, 2)), seeds=masks, case="p8")
    with pytest.raises(SolverError, match=r"p9: the seeds use labels \[1\], not among the allowed \[0, 2\]"):
        PottsProblem(np.zeros((3, 2, 2)), seeds=np.array([[1, -1], [-1, -1]]), labels=[0, 2], case="p9")
    with pytest.raises(SolverError, match=r"p10: seeds of shape \(3, 3\) do not match"):
        PottsProblem(np.zeros((3, 2, 2)), seeds=np.zeros((3, 3), dtype=int), case="p10")
    with pytest.raises(SolverError, match=r"p11: the weights of offset \(0, 1\) must be finite and >= 0"):
        PottsProblem(np.zeros((2, 2, 2)), [((0, 1), np.array([[-1.0], [1.0]]))], case="p11")
    with pytest.raises(SolverError, match=r"p12: a binary graph cut needs two labels"):
        binary_graph_cut(PottsProblem(np.zeros((3, 2, 2)), case="p12"))


def test_pool_solves_in_workers_and_names_failed_cases():
    problems = [random_problem((6, 6), 3, 8, s, case=c) for s, c in enumerate(["first", "second"])]
    with SolverPool(workers=2) as pool:
        futures = pool.submit(problems[:1])  # returns at once
        assert (pool.gather(futures, problems[:1])[0] == alpha_expansion(problems[0])).all()
    with SolverPool(raise_on_second, workers=1) as pool, pytest.raises(SolverError, match="second: ArithmeticError"):
        pool.solve(problems)
    with SolverPool(kill_self, workers=1) as pool:
        with pytest.raises(SolverError, match="first: the solver process died"):
            pool.solve(problems[:1])
        pool.solver = "alpha_expansion"  # a fresh process after the crash
        assert pool.solve(problems[:1])[0].shape == (6, 6)
    with (
        SolverPool(hang, workers=1, timeout=2) as pool,
        pytest.raises(SolverError, match=r"first: no result after 2 s"),
    ):
        pool.solve(problems[:1])


def test_in_process_pool_and_argument_checks():
    problem = random_problem((3, 3), 2, 4, 0, case="c")
    with SolverPool("graph_cut", workers=0) as pool:
        assert (pool.solve([problem])[0] == binary_graph_cut(problem)).all()
    with pytest.raises(ValueError, match="solver must be one of"):
        SolverPool("icm")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        SolverPool(timeout=0)
