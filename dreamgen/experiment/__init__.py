"""The whole DreamGen loop on ToyWorld: what `dreamgen demo` and `dreamgen experiment` run.

    config.py   the settings (one dataclass per step), read from dreamgen/configs/experiment/*.yaml
    runner.py   `Pipeline`: the steps, in order, each resumable
    judges.py   the ToyWorld sim-replay judge of dreams
    results.py  the report (report.py writes the page), success tables, loss curves, scaling plot
"""

from dreamgen.experiment.config import STEPS, VARIANTS, PipelineConfig, load_pipeline_config
from dreamgen.experiment.runner import Pipeline

__all__ = ["STEPS", "VARIANTS", "Pipeline", "PipelineConfig", "load_pipeline_config"]
