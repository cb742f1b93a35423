"""The MONAI Label app folder of wss-monai: serves a bundle's trained run (see docs/monai_label.md).

    monailabel start_server --app apps/wss_label --studies DIR --conf bundle acdc --conf run_dir RUN \
        --uvicorn_app wss_monai.label.app.server:app

MONAI Label takes the class of this module that subclasses ``MONAILabelApp``; everything is in
:mod:`wss_monai.label.app`.
"""

from wss_monai.label.app.application import WssLabelApp

__all__ = ["WssLabelApp"]
