"""Data sets (their names live in study/dataset_names.py): the dataset type and shared file-pair reader
(common.py), the one map from name to loader (build.py), the context probe and its controls
(synthetic.py), the loaders camvid.py, ade20k.py, cityscapes.py, voc.py, labelmefacade.py and folder.py (a generic
images/masks folder), paired transforms (transforms.py) and what data a run saw as one digest (fingerprint.py)."""
