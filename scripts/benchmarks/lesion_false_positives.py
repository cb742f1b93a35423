"""Where the false positives of the lesion benchmark lie: on the unlabelled mimics, far from lesions?

The boundary loss weights a false positive by its distance to the nearest lesion, so its published
effect is to remove *far-away* false positives. This script measures, for the finished runs of
``scripts/benchmarks/lesion_boundary.py``, how many of each method's false-positive components lie
on a lesion mimic (:func:`wss_monai.data.lesion_phantoms.make_isles_phantoms` ``mimics``: old infarcts;
WMH: FLAIR-bright grey-matter spots) and how many lie far (> ``--far_mm``) from every lesion.

For every run (``<output_dir>/<dataset>/<method>[_seed<k>]``) it segments the run's held-out cases
with the bundle's inference config and its final checkpoint, then compares with the labels (WMH
label 2 removed from the prediction, as in the evaluation). A predicted component is a true positive
when it touches a lesion (full connectivity), a false positive otherwise. The mimic masks come from
regenerating the same phantoms without mimics (the labelled phantom and its images are identical
apart from the mimics): a voxel belongs to a mimic where the CBF map (ISLES) or the FLAIR (WMH)
differs.

    python scripts/benchmarks/lesion_false_positives.py --output_dir runs/bench_lesion_mimics \\
        --seeds 0 1 2 --methods gdl gdl_bl2d gdl_bl3d gdl_hddt
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from lesion_boundary import METHODS, bundle_configs, config_list, generate_phantoms, run_dir  # noqa: E402

from wss_monai.utils.bundle_runs import bundle_command, record_config_if_missing, run_logged  # noqa: E402

MIMIC_CHANNEL = {"isles": 1, "wmh": 0}  # CBF, FLAIR
FULL = np.ones((3, 3, 3), bool)
logger = logging.getLogger("benchmark.lesion_false_positives")


def _array(path) -> np.ndarray:
    return np.asanyarray(nib.load(str(path)).dataobj)


def plain_twin(dataset: str, data: Path, work: Path) -> Path:
    """The benchmark's phantoms regenerated without mimics (same seed, size and number of cases)."""
    made = json.loads((data / "done.json").read_text())
    if dataset == "isles":
        cases = len(list((data / "TRAINING").glob("case_*")))
    else:
        cases = len(list(data.rglob("wmh.nii.gz")))
    return generate_phantoms(dataset, work / dataset, made["seed"], made["size"], cases)


def segment(dataset: str, method: str, run: Path, data: Path) -> Path:
    """Predictions of every case of ``data`` with the run's final checkpoint (bundle inference)."""
    pred_dir = run / "predictions"
    if not pred_dir.is_dir():
        size = json.loads((data / "done.json").read_text())["size"]
        # a run trained before runs recorded their config: the network and preprocessing depend on these only
        record_config_if_missing(run, bundle_configs(dataset, method), {"spatial_size": size})
        overrides = {
            "run_dir": run,
            "input_dir": data,
            "ckpt_path": run / "models/model_final.pt",
            **({"infer_subset": "TRAINING"} if dataset == "isles" else {}),
        }
        infer_config = config_list(dataset, kind="inference")
        run_logged(bundle_command("inferring", infer_config, overrides), run / "inference_log.txt", cwd=ROOT)
    return pred_dir


def count(dataset: str, run: Path, twin: Path, pred_dir: Path, far_mm: float) -> dict:
    """Lesion and false-positive counts over the run's held-out cases."""
    totals = dict.fromkeys(("lesions", "found", "fp", "fp_mimic", "fp_far", "fp_voxels", "mimics"), 0)
    datalist = json.loads((run / "datalist.json").read_text())
    source = Path(datalist["dataset_dir"]).resolve()  # where the run read the phantoms
    for case in datalist["validation"]:
        first = Path(case["image"][0])
        rel = first.relative_to(source)
        label_image = nib.load(case["label"])
        label = _array(case["label"])
        spacing = np.abs(np.diag(label_image.affine)[:3])
        channel = MIMIC_CHANNEL[dataset]
        mimic = ~np.isclose(
            _array(case["image"][channel]),
            _array(twin / Path(case["image"][channel]).relative_to(source)),
            rtol=1e-4,
            atol=1e-4,
        )
        stem = first.name.removesuffix(".gz").removesuffix(".nii")
        pred = _array(pred_dir / rel.parent / f"{stem}_seg.nii.gz") == 1
        pred &= label != 2
        lesion = label == 1
        distance = (
            ndimage.distance_transform_edt(~lesion, sampling=spacing) if lesion.any() else np.full(label.shape, np.inf)
        )
        components, n = ndimage.label(pred, FULL)
        for k in range(1, n + 1):
            component = components == k
            if (component & lesion).any():
                continue
            totals["fp"] += 1
            totals["fp_voxels"] += int(component.sum())
            totals["fp_mimic"] += int((component & mimic).any())
            totals["fp_far"] += int(distance[component].min() > far_mm)
        lesions, n_lesions = ndimage.label(lesion, FULL)
        totals["lesions"] += n_lesions
        totals["found"] += len(np.unique(lesions[pred & lesion]))
        totals["mimics"] += ndimage.label(mimic, FULL)[1]
    return totals


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", required=True, help="output folder of lesion_boundary.py")
    parser.add_argument("--datasets", nargs="+", default=["isles", "wmh"], choices=["isles", "wmh"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--far_mm", type=float, default=5.0, help="a false positive farther than this is 'far'")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.output_dir).resolve()
    results: dict = {}
    lines = [
        "| data set | method | lesions found | false-positive components | on a mimic | far (> "
        f"{args.far_mm:g} mm) | false-positive voxels | mimics |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as work:
        for dataset in args.datasets:
            data = out / f"data_{dataset}"
            twin = plain_twin(dataset, data, Path(work))
            for method in args.methods:
                totals: dict = {}
                for seed in args.seeds:
                    run = run_dir(out, dataset, method, seed)
                    pred_dir = segment(dataset, method, run, data)
                    for key, value in count(dataset, run, twin, pred_dir, args.far_mm).items():
                        totals[key] = totals.get(key, 0) + value
                results.setdefault(dataset, {})[method] = totals
                t = totals
                lines.append(
                    f"| {dataset.upper()} | {method} | {t['found']} / {t['lesions']} | {t['fp']} | {t['fp_mimic']} "
                    f"| {t['fp_far']} | {t['fp_voxels']} | {t['mimics']} |"
                )
    print(f"held-out cases of seeds {' '.join(map(str, args.seeds))}, summed\n\n" + "\n".join(lines))
    (out / "false_positives.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
