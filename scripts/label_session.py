"""A recorded MONAI Label session on phantoms or ACDC: start the server, infer, scribble, refine, train, infer again.

An annotation project that starts from nothing: the server serves an untrained run of the ACDC
bundle; an annotator's scribbles (the phantoms' own, painted in Slicer's convention: 0 none, 1-3
the structures, 4 background) are saved for ``--annotated`` images; the refinement task is timed on
one of them; the training task learns from the saved scribbles; every image is segmented before and
after. The mean 3D Dice over RV, MYO and LV (against the phantoms' full labels, never shown to the
server) is reported for the scribbled images and for the others::

    python scripts/label_session.py --output_dir runs/label_session

With ``--acdc_dir`` the studies are real ACDC frames (both frames of each of ``--patients``) and the
annotator's scribbles are the released manual scribbles of the first ``--annotated`` frames::

    python scripts/label_session.py --output_dir runs/label_session_acdc --acdc_dir ../shared/data/acdc \
        --annotated 8 --spatial_size 128

Needs ``.venv-label`` (``scripts/setup_label_env.sh``); writes ``session.json`` and the server's log.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from wss_monai.data.phantoms import make_cardiac_phantoms
from wss_monai.label import untrained_run
from wss_monai.label.launch import running_server
from wss_monai.paths import repository_root

logger = logging.getLogger("label_session")


def mean_dice(prediction: np.ndarray, label: np.ndarray, classes=(1, 2, 3)) -> float:
    """Mean over ``classes`` of the 3D Dice of two label maps."""
    scores = []
    for c in classes:
        a, b = prediction == c, label == c
        scores.append(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    return float(np.mean(scores))


ACDC_PATIENTS = ["patient008", "patient015", "patient026", "patient030", "patient032", "patient034"]
"""Default ACDC patients of a session: held-out test patients of the ACDC benchmarks (never trained on there)."""


def _acdc_frames(acdc_dir: Path, patients: list[str]) -> list[Path]:
    frames = []
    for patient in patients:
        found = sorted((acdc_dir / "training" / patient).glob(f"{patient}_frame[0-9][0-9].nii.gz"))
        if not found:
            raise FileNotFoundError(f"no {patient}_frameYY.nii.gz under {acdc_dir / 'training' / patient}")
        frames += found
    return frames


def _studies(output_dir: Path, images: list[Path], name_of) -> tuple[Path, dict, dict]:
    """Copies ``images`` into a studies folder; their full labels, and their scribbles painted as in Slicer."""
    studies, labels, scribbles = output_dir / "studies", {}, {}
    studies.mkdir(parents=True, exist_ok=True)
    for image in images:
        name = name_of(image)
        shutil.copy(image, studies / f"{name}.nii.gz")
        labels[name] = np.asarray(nib.load(str(image).replace(".nii.gz", "_gt.nii.gz")).dataobj)
        stored = nib.load(str(image).replace(".nii.gz", "_scribble.nii.gz"))
        data = np.asarray(stored.dataobj)
        painted = np.where(data == 4, 0, np.where(data == 0, 4, data)).astype(np.uint8)
        scribbles[name] = output_dir / "annotator" / f"{name}_scribbles.nii.gz"
        scribbles[name].parent.mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(painted, stored.affine), str(scribbles[name]))
    return studies, labels, scribbles


def _segment_all(client, labels: dict, folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    scores = {}
    for name, label in labels.items():
        start = time.perf_counter()
        status, body = client.infer("segmentation", name)
        if status != 200:
            raise RuntimeError(f"/infer/segmentation?image={name} answered {status}: {body[:300]!r}")
        (folder / f"{name}.nii.gz").write_bytes(body)
        prediction = np.asarray(nib.load(str(folder / f"{name}.nii.gz")).dataobj)
        scores[name] = round(mean_dice(prediction, label), 4)
        logger.info("%s: Dice %.3f (%.1f s)", name, scores[name], time.perf_counter() - start)
    return scores


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_images", type=int, default=6, help="phantom images")
    parser.add_argument("--acdc_dir", default=None, help="raw ACDC folder: real frames, scribbles")
    parser.add_argument("--patients", nargs="+", default=ACDC_PATIENTS, help="ACDC patients (both frames of each)")
    parser.add_argument("--annotated", type=int, default=4, help="images the annotator scribbles")
    parser.add_argument("--shape", type=int, default=96, help="in-plane size of the phantoms")
    parser.add_argument("--spatial_size", type=int, default=64)
    parser.add_argument("--max_epochs", type=int, default=60)
    parser.add_argument("--learning_rate", type=float, default=0.002)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--regulariser", default="dense_crf")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    output_dir = Path(args.output_dir).resolve()
    if output_dir.exists():
        shutil.rmtree(output_dir)
    if args.acdc_dir:
        images = _acdc_frames(Path(args.acdc_dir), args.patients)
        studies, labels, scribbles = _studies(output_dir, images, lambda p: p.name[: -len(".nii.gz")])
    else:
        root = make_cardiac_phantoms(output_dir / "phantoms", num_patients=args.num_images, shape=(args.shape,) * 2)
        images = sorted((root / "training").glob("patient*/patient*_frame01.nii.gz"))
        studies, labels, scribbles = _studies(output_dir, images, lambda p: p.name.replace("_frame01.nii.gz", ""))
    run_dir = untrained_run("acdc", output_dir / "run0", overrides={"spatial_size": args.spatial_size})
    app_dir = output_dir / "app"
    app_dir.mkdir()
    shutil.copy(repository_root() / "apps" / "wss_label" / "main.py", app_dir / "main.py")
    conf = {"bundle": "acdc", "run_dir": run_dir, "regulariser": args.regulariser}
    annotated = sorted(labels)[: args.annotated]
    session: dict = {"images": sorted(labels), "annotated": annotated, "arguments": vars(args)}
    with running_server(app_dir, studies, conf, output_dir / "server.log") as client:
        session["info_models"] = sorted(client.wait()["models"])
        session["dice_before"] = _segment_all(client, labels, output_dir / "before")
        for name in annotated:
            status, body = client.save_label(name, scribbles[name], "scribbles")
            if status != 200:
                raise RuntimeError(f"saving the scribbles of {name} answered {status}: {body[:300]!r}")
        start = time.perf_counter()
        status, body = client.infer("refinement", annotated[0])
        seconds = round(time.perf_counter() - start, 2)
        if status != 200:
            raise RuntimeError(f"/infer/refinement answered {status}: {body[:300]!r}")
        (output_dir / "refined.nii.gz").write_bytes(body)
        refined = np.asarray(nib.load(str(output_dir / "refined.nii.gz")).dataobj)
        dice = round(mean_dice(refined, labels[annotated[0]]), 4)
        session["refinement"] = {"image": annotated[0], "request_seconds": seconds, "dice": dice}
        start = time.perf_counter()
        options = {k: getattr(args, k) for k in ("max_epochs", "spatial_size", "learning_rate", "batch_size")}
        status, body = client.train("segmentation", options)
        if status != 200:
            raise RuntimeError(f"/train/segmentation answered {status}: {body[-2000:]!r}")
        session["training"] = {**json.loads(body), "request_seconds": round(time.perf_counter() - start, 1)}
        session["dice_after"] = _segment_all(client, labels, output_dir / "after")
    for when in ("before", "after"):
        scores = session[f"dice_{when}"]
        session[f"mean_dice_{when}"] = {
            "annotated": round(float(np.mean([scores[n] for n in annotated])), 4),
            "others": round(float(np.mean([scores[n] for n in labels if n not in annotated])), 4),
        }
    (output_dir / "session.json").write_text(json.dumps(session, indent=2) + "\n")
    logger.info("Dice before %s, after %s", session["mean_dice_before"], session["mean_dice_after"])
    return session


if __name__ == "__main__":
    main()
