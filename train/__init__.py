"""emocam.train: the training pipeline that makes emocam's model (ImageNet -> FER-2013 -> target set, Ng et al.
ICMI 2015), installed from the repository's train/ folder. It imports the live side's crop, reading and contract
from ``emocam``; the live side never imports it. The ``emotrain`` command is ``emocam.train.cli``."""
