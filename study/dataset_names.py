"""The names a config may use before any loader (or torch) is imported: data sets and probe kinds.

The one list of data set names: `DataConfig.validate` checks `data.name` against it and `study.data.build.LOADERS`
maps each of them to its loader and class names (a test checks they agree).
"""

from __future__ import annotations

DATASETS = ("probe", "camvid", "ade20k", "cityscapes", "voc", "labelmefacade", "folder")
ROOTLESS = ("probe",)  # built in memory: no data.root
# The context probe's cue (study.data.synthetic): the measured probe and its four controls.
PROBE_KINDS = ("proportion", "presence", "local", "local_fine", "misaligned", "diluted", "shortcut")
