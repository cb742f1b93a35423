"""The MONAI Label app of wss-monai (needs ``monailabel``: the ``.venv-label`` environment).

- :class:`~wss_monai.label.app.application.WssLabelApp`: serves a bundle's trained run;
  ``apps/wss_label/main.py`` is the app folder MONAI Label starts.
- :class:`~wss_monai.label.app.infer.SegmentationTask`: 3D volume in, labels in the input's space out.
- :class:`~wss_monai.label.app.infer.RefinementTask`: new scribbles + the network's probabilities → graph
  cut / α-expansion in 3D, scribbles hard.
- :class:`~wss_monai.label.app.train.DatastoreTrainTask`: trains the bundle on the datastore's scribbles,
  boxes and full labels (partial CE or the box recipe, + a CRF loss) and serves the new weights.
- :class:`~wss_monai.label.app.datastore.CheckedDatastore`: refuses unusable uploads before saving them.
- :mod:`wss_monai.label.app.server`: MONAI Label's FastAPI app with 4xx answers for malformed requests.
"""

from wss_monai.label.app.application import WssLabelApp

__all__ = ["WssLabelApp"]
